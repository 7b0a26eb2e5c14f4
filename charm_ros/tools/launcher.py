"""Start several ROS 2 nodes as subprocesses with standard `--ros-args`, and stop them cleanly.

`ros2 launch` is not installable from PyPI, so the demo, the tests and users of a pip install use
this. It reads the ROS 2 YAML launch format (the subset: `arg`, `node` with pkg/exec/name/
namespace/param/remap/args/on_exit, `executable` with cmd/name/on_exit, `if`/`unless` on both), so the
same file also works with `ros2 launch` on a real install:

    python -m charm_ros.tools.launcher launch/sim_demo.launch.yaml duration:=40 --timeout 60

Children run in their own sessions; SIGINT/SIGTERM to the launcher are forwarded as SIGINT, then
escalated to SIGTERM and SIGKILL after `stop_timeout`, so no node outlives the launcher.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from charm_core.cli_help import HelpFormatter
from charm_ros.env import clear_stale_shm, ros_environment
from charm_ros.paths import PACKAGE, share_dir


def format_parameter(value: Any) -> str:
    """Render a parameter value the way `-p name:=value` parses it back (YAML), keeping strings strings."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20).strip()
    return text[:-3].strip() if text.endswith("...") else text


def resolve_executable(executable: str, package: str = PACKAGE) -> str:
    """Find a node executable: a path, this interpreter's bin dir (pip), PATH, or `lib/<pkg>/` (colcon)."""
    if os.sep in executable:
        if not os.access(executable, os.X_OK):
            raise FileNotFoundError(f"executable {executable!r} does not exist or is not executable")
        return executable
    candidates = [Path(sys.executable).parent / executable]
    prefix = os.environ.get("AMENT_PREFIX_PATH", "")
    candidates += [Path(p) / "lib" / package / executable for p in prefix.split(os.pathsep) if p]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(executable)
    if found:
        return found
    raise FileNotFoundError(f"executable {executable!r} of package {package!r} not found "
                            f"(looked in {', '.join(str(c.parent) for c in candidates)} and PATH)")


@dataclass
class NodeSpec:
    """One node process. `command` is the program (resolved executable or e.g. [python, script])."""

    command: list[str]
    name: str | None = None
    namespace: str | None = None
    params_files: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: list[tuple[str, str]] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    shutdown_on_exit: bool = False  # YAML `on_exit: shutdown`: this node ending ends the launch

    @property
    def label(self) -> str:
        return self.name or Path(self.command[-1]).name

    def argv(self) -> list[str]:
        ros_args: list[str] = []
        if self.name:
            ros_args += ["-r", f"__node:={self.name}"]
        if self.namespace:
            ns = self.namespace if self.namespace.startswith("/") else "/" + self.namespace
            ros_args += ["-r", f"__ns:={ns}"]
        for path in self.params_files:
            ros_args += ["--params-file", str(path)]
        for key, value in self.parameters.items():
            ros_args += ["-p", f"{key}:={format_parameter(value)}"]
        for src, dst in self.remappings:
            ros_args += ["-r", f"{src}:={dst}"]
        argv = [*self.command, *self.arguments]
        return argv + ["--ros-args", *ros_args] if ros_args else argv


class Launcher:
    """Run NodeSpecs as child processes; a context manager that always stops them."""

    def __init__(self, specs: Iterable[NodeSpec], env: dict[str, str] | None = None,
                 stop_timeout: float = 5.0) -> None:
        self.specs = list(specs)
        self.env = ros_environment() if env is None else env
        self.stop_timeout = stop_timeout
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        clear_stale_shm()
        for spec in self.specs:
            label = spec.label
            if label in self.processes:
                label = f"{label}#{len(self.processes)}"
            self.processes[label] = subprocess.Popen(
                spec.argv(), env={**self.env, **spec.env}, start_new_session=True)

    def poll(self) -> dict[str, int | None]:
        return {label: proc.poll() for label, proc in self.processes.items()}

    def finished(self) -> bool:
        """All children exited, or one marked `shutdown_on_exit` did."""
        codes = list(self.poll().values())
        return all(c is not None for c in codes) or any(
            c is not None and spec.shutdown_on_exit for spec, c in zip(self.specs, codes))

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every child exited or `timeout` passed; True when all have exited."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while any(code is None for code in self.poll().values()):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> dict[str, int]:
        """SIGINT every child, escalate to SIGTERM then SIGKILL; return the exit codes."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            alive = [p for p in self.processes.values() if p.poll() is None]
            if not alive:
                break
            for proc in alive:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
            self.wait(self.stop_timeout)
        for proc in self.processes.values():
            proc.wait()
        clear_stale_shm()
        return {label: proc.returncode for label, proc in self.processes.items()}

    def __enter__(self) -> "Launcher":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ----------------------------------------------------------------------------- YAML launch files

_SUBST = re.compile(r"\$\((\S+)\s*([^)]*)\)")


def _substitute(text: Any, launch_args: dict[str, str]) -> Any:
    if not isinstance(text, str):
        return text

    def replace(match: re.Match) -> str:
        kind, arg = match.group(1), match.group(2).strip()
        if kind == "var":
            if arg not in launch_args:
                raise KeyError(f"launch argument {arg!r} is not declared")
            return launch_args[arg]
        if kind == "find-pkg-share":
            if arg != PACKAGE:
                raise ValueError(f"$(find-pkg-share {arg}): only {PACKAGE} is known to this launcher")
            return str(share_dir())
        if kind == "env":
            name, _, default = arg.partition(" ")
            return os.environ.get(name, default)
        raise ValueError(f"unsupported substitution $({kind} ...)")

    return _SUBST.sub(replace, text)


def _condition(body: dict, launch_args: dict[str, str], path: str | Path) -> bool:
    """An entry's `if` / `unless` (true/false, 1/0, as launch's conditions take them)."""
    keep = True
    for key, wanted in (("if", True), ("unless", False)):
        if key in body:
            value = str(_substitute(str(body[key]), launch_args)).strip().lower()
            if value not in ("true", "false", "1", "0"):
                raise ValueError(f"{path}: `{key}: {body[key]}` is {value!r}, expected true or false")
            keep = keep and (value in ("true", "1")) == wanted
    return keep


def load_launch_yaml(path: str | Path, overrides: dict[str, str] | None = None
                     ) -> tuple[list[NodeSpec], dict[str, str]]:
    """Parse a ROS 2 YAML launch file into NodeSpecs; returns them and the resolved launch arguments."""
    doc = yaml.safe_load(Path(path).read_text())
    if not isinstance(doc, dict) or not isinstance(doc.get("launch"), list):
        raise ValueError(f"{path}: not a ROS 2 YAML launch file (expected a top-level 'launch:' list)")
    overrides = dict(overrides or {})
    launch_args: dict[str, str] = {}
    specs: list[NodeSpec] = []
    for entry in doc["launch"]:
        (kind, body), = entry.items()
        if kind == "arg":
            name = body["name"]
            if name in overrides:
                launch_args[name] = overrides.pop(name)
            elif "default" in body:
                launch_args[name] = _substitute(str(body["default"]), launch_args)
            else:
                raise ValueError(f"{path}: launch argument {name!r} has no default and was not given")
        elif kind in ("node", "executable") and not _condition(body, launch_args, path):
            continue
        elif kind == "node":
            sub = lambda value: _substitute(value, launch_args)  # noqa: E731
            spec = NodeSpec(command=[resolve_executable(sub(body["exec"]), sub(body.get("pkg", PACKAGE)))],
                            name=sub(body.get("name")), namespace=sub(body.get("namespace")) or None)
            for param in body.get("param", []):
                if "from" in param:
                    spec.params_files.append(sub(param["from"]))
                else:
                    spec.parameters[param["name"]] = yaml.safe_load(str(sub(param["value"])))
            spec.remappings = [(sub(r["from"]), sub(r["to"])) for r in body.get("remap", [])]
            spec.arguments = sub(str(body.get("args", ""))).split()
            spec.shutdown_on_exit = body.get("on_exit") == "shutdown"
            specs.append(spec)
        elif kind == "executable":  # ExecuteProcess: any command line
            specs.append(NodeSpec(command=shlex.split(_substitute(body["cmd"], launch_args)),
                                  name=_substitute(body.get("name"), launch_args),
                                  shutdown_on_exit=body.get("on_exit") == "shutdown"))
        else:
            raise ValueError(f"{path}: unsupported launch entry {kind!r}")
    if overrides:
        raise ValueError(f"{path}: unknown launch arguments {sorted(overrides)}")
    return specs, launch_args


TIMEOUT_EXIT = 124  # as timeout(1): the run was cut short


def parse_command_line(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[NodeSpec]]:
    """Options and launch arguments in any order (`make demo` puts name:=value after --timeout), and
    the nodes of the launch file; exits 2 with the reason on a bad command line or launch file."""
    parser = argparse.ArgumentParser(prog="charm-launch", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("launch_file", help="ROS 2 YAML launch file")
    parser.add_argument("launch_args", nargs="*", metavar="name:=value", help="launch arguments")
    parser.add_argument("--timeout", type=float, default=None,
                        help="stop all nodes after this many seconds (default: run until they exit or Ctrl-C)")
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID for the nodes")
    args = parser.parse_intermixed_args(argv)
    overrides = {}
    for item in args.launch_args:
        name, sep, value = item.partition(":=")
        if not sep:
            parser.error(f"launch arguments are name:=value, got {item!r}")
        overrides[name] = value
    try:
        specs, _ = load_launch_yaml(args.launch_file, overrides)
    except (OSError, ValueError, KeyError) as exc:
        parser.error(str(exc))
    return args, specs


def main(argv: list[str] | None = None) -> int:
    args, specs = parse_command_line(argv)

    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    launcher = Launcher(specs, env=ros_environment(args.domain_id))
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    timed_out = False
    with launcher:
        print(f"[launcher] started {', '.join(launcher.processes)} "
              f"(ROS_DOMAIN_ID={launcher.env['ROS_DOMAIN_ID']})", flush=True)
        while not stopping and not launcher.finished():
            if deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                print(f"[launcher] --timeout {args.timeout:g} s reached before the launch finished: stopping "
                      "every node (raise --timeout, e.g. make demo DEMO_TIMEOUT=..., for a longer run)",
                      file=sys.stderr, flush=True)
                break
            time.sleep(0.1)
    codes = {label: proc.returncode for label, proc in launcher.processes.items()}
    print(f"[launcher] stopped: {codes}", flush=True)
    if timed_out:
        return TIMEOUT_EXIT
    # a node stopped by our own SIGINT/SIGTERM is a clean stop; anything else is a failure
    failed = [label for label, code in codes.items() if code not in (0, -signal.SIGINT, -signal.SIGTERM, 130)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
