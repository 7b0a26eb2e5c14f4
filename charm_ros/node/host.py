"""The one main() of every node in this package: init, build, spin, and always clean up.

`<executable> --help` prints the node's parameters and exits; any other argument outside `--ros-args`
is an error (exit 2), not silently ignored. A node that cannot start (bad parameters, missing
checkpoint) logs one fatal line and exits 2; Ctrl-C, SIGTERM, an external shutdown or a callback
raising SystemExit (a node that decided it is done) exit cleanly. A received message that rclpy
itself cannot turn into a Python object is dropped and reported to the node
(`on_undecodable(topic, error)` if it has one), never the end of the node.

Signals are Python's, not rclpy's: with rclpy's handlers, nodes stopped together sometimes ignored
SIGINT and SIGTERM and spun on until SIGKILL. Python's handlers run whenever the main thread is in
Python, so the executor waits in short slices (WAKE_S) rather than indefinitely.
"""
from __future__ import annotations

import faulthandler
import math
import os
import signal
import sys
from typing import Any, Callable, Iterable

import rclpy
import yaml
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args

from charm_ros.runtime.parameters import ConfigError, ParamSpec, check_all, help_text, load_param_file

WAKE_S = 0.2  # longest wait before a pending signal is acted on
CLEANUP_TIMEOUT_S = 4.0  # a clean stop takes well under 1 s; launchers escalate to SIGTERM after 5 s
INT64 = (-2 ** 63, 2 ** 63 - 1)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def init_with_python_signals(args: list[str] | None = None) -> None:
    """rclpy.init, with SIGINT and SIGTERM raising KeyboardInterrupt in the main thread (not rclpy's)."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)


def command_line_exit(argv: list[str], name: str, parameters: Iterable[ParamSpec], summary: str) -> int | None:
    """The exit code for a command line that asks for help (0) or has arguments outside --ros-args (2);
    None for a command line to run."""
    program = os.path.basename(argv[0]) if argv else name
    extra = remove_ros_args(args=argv)[1:]
    if any(a in ("-h", "--help") for a in extra):
        print(help_text(program, name, summary, parameters))
        return 0
    if extra:
        print(f"{program}: unrecognized arguments: {' '.join(extra)} (node options go after --ros-args, e.g. "
              f"{program} --ros-args -p name:=value; see {program} --help)", file=sys.stderr)
        return 2
    return None


def descriptor(spec: ParamSpec, bounded: bool = True) -> ParameterDescriptor:
    """The ROS descriptor of a spec, so `ros2 param describe` shows what --help shows: the description, its
    range (integer_range / floating_point_range, the open side at the type's limit) and its choices (ROS has
    no enum: `additional_constraints` names them). rclpy then refuses an out-of-range `ros2 param set`."""
    d = ParameterDescriptor(description=spec.description, read_only=not spec.dynamic, dynamic_typing=True,
                            additional_constraints=spec.bounds())
    if not bounded or (spec.minimum is None and spec.maximum is None) or isinstance(spec.default, bool):
        return d
    if isinstance(spec.default, int):
        low = INT64[0] if spec.minimum is None else math.ceil(spec.minimum)
        high = INT64[1] if spec.maximum is None else math.floor(spec.maximum)
        d.integer_range = [IntegerRange(from_value=low, to_value=high, step=0)]
    elif isinstance(spec.default, float):
        low = -math.inf if spec.minimum is None else float(spec.minimum)
        high = math.inf if spec.maximum is None else float(spec.maximum)
        d.floating_point_range = [FloatingPointRange(from_value=low, to_value=high, step=0.0)]
    return d


def declare(node: Node, specs: Iterable[ParamSpec], argv: list[str] | None = None) -> dict[str, Any]:
    """Declare every parameter (read-only unless dynamic) and return {name: value} as given at start,
    each checked against its spec. Types are checked here rather than by rclpy, so `-p fps:=5` is the
    float 5.0 and a string for a number is one clear line. Raises one ConfigError listing every bad
    value, and every `-p` that rcl dropped (it keeps a params file's value over a later `-p` of
    another type)."""
    specs = list(specs)
    for spec in specs:
        try:
            node.declare_parameter(spec.name, spec.default, descriptor(spec))
        except InvalidParameterValueException:  # out of range: declared unbounded, check_all names it below
            node.declare_parameter(spec.name, spec.default, descriptor(spec, bounded=False))
    given = {spec.name: node.get_parameter(spec.name).value for spec in specs}
    dropped = [f"parameter {name}: -p {name}:={text} was not applied (the value in effect is {given[name]!r}, "
               "from a params file: give a value of the same type)"
               for name, (text, value) in _last_overrides(sys.argv if argv is None else argv, node.get_name()).items()
               if name in given and not _same(given[name], text, value)]
    try:
        values = check_all(specs, given)
    except ConfigError as exc:
        raise ConfigError("\n".join([str(exc), *dropped])) from None
    if dropped:
        raise ConfigError("\n".join(dropped))
    return values


def _same(given: Any, text: str, value: Any) -> bool:
    """Whether the value in effect is the `-p` one (YAML reads 1e-3 as a string, rcl as a float)."""
    if given == value:
        return True
    try:
        return isinstance(given, float) and float(text) == given
    except ValueError:
        return False


def _last_overrides(argv: list[str], node_name: str) -> dict[str, tuple[str, Any]]:
    """{name: (text, value)} of each `-p name:=value` in the ROS arguments that no later params file
    overrides, parsed as rcl parses it (YAML)."""
    out: dict[str, tuple[str, Any]] = {}
    in_ros, i = False, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--ros-args":
            in_ros = True
        elif arg == "--":
            in_ros = False
        elif in_ros and arg in ("-p", "--param") and i + 1 < len(argv):
            i += 1
            target, sep, text = argv[i].partition(":=")
            node, _, name = target.rpartition(":")
            if sep and node in ("", node_name):
                try:
                    out[name] = (text, yaml.safe_load(text))
                except yaml.YAMLError:
                    out[name] = (text, text)
        elif in_ros and arg == "--params-file" and i + 1 < len(argv):
            i += 1
            try:
                for name in load_param_file(argv[i], node_name):
                    out.pop(name, None)
            except (OSError, ValueError, yaml.YAMLError):
                pass  # rcl reports an unreadable file itself
        i += 1
    return out


def run_node(factory: Callable[[], Node], name: str, args: list[str] | None = None,
             startup_errors: tuple[type[BaseException], ...] = (ValueError, OSError),
             parameters: Iterable[ParamSpec] = (), summary: str = "") -> int:
    code = command_line_exit(sys.argv if args is None else args, name, parameters, summary)
    if code is not None:
        return code
    init_with_python_signals(args)
    try:
        node = factory()
    except startup_errors as exc:
        rclpy.logging.get_logger(name).fatal(f"cannot start: {exc}")
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:
        rclpy.try_shutdown()
        return 0
    report = getattr(node, "on_undecodable", None)
    if not callable(report):
        logger = node.get_logger()

        def report(topic: str, error: Exception) -> None:
            logger.warning(f"dropped an undecodable message on {topic}: {error}", throttle_duration_sec=5.0)
    executor: TolerantExecutor | None = None
    code = 0
    try:  # the executor too: a Ctrl-C right after start must reach the cleanup below, not a traceback
        executor = TolerantExecutor(report)
        executor.add_node(node)
        while executor.context.ok():
            executor.spin_once(timeout_sec=WAKE_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SystemExit as done:
        code = int(done.code or 0)
    finally:
        # Fast DDS can spin forever destroying a participant while a discovery callback is in flight
        # (eProsima/Fast-DDS#6513, when nodes stop together), holding the GIL, so no Python
        # timer could end it: faulthandler's own thread does, printing the stacks and exiting with 1.
        faulthandler.dump_traceback_later(CLEANUP_TIMEOUT_S, exit=True)
        stop = getattr(node, "shutdown", None)
        if callable(stop):
            stop()
        if executor is not None:
            executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        faulthandler.cancel_dump_traceback_later()
    return code


class TolerantExecutor(SingleThreadedExecutor):
    """A SingleThreadedExecutor that survives a message rclpy fails to convert.

    rclpy raises from its own take (before any callback) when converting a received message fails,
    e.g. "Unable to convert call argument '0' to Python object" (ros2/rclpy#848), and the executor
    would end spin(). Such a message is dropped and reported instead; the subscription keeps working.
    """

    def __init__(self, on_undecodable: Callable[[str, Exception], None], *, context: Any = None) -> None:
        super().__init__(context=context)
        self._on_undecodable = on_undecodable

    def _take_subscription(self, sub: Any) -> Any:
        try:
            return super()._take_subscription(sub)
        except RuntimeError as exc:
            self._on_undecodable(sub.topic_name, exc)
            return None
