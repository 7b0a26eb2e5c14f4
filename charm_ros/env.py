"""The one place that keeps ROS 2 / Fast DDS traffic on this machine and sized for camera images.

Tests, the demo, CI and the launcher all take their environment from here, so a fix to DDS settings
is made once. Kilted ignores ROS_LOCALHOST_ONLY: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST is what
stops multicast discovery leaving the host, and the Fast DDS profile adds a 32 MiB shared-memory
segment (the 512 KB default silently drops best-effort images) and loopback-only UDP.

    python -m charm_ros.env [--domain-id N] -- CMD ARGS...   run CMD in that environment

The ROS_DOMAIN_ID is --domain-id, else an exported ROS_DOMAIN_ID, else DEFAULT_DOMAIN_ID (ROS 2's own
default, 0), so two terminals that run the wrapper meet, and so does a plain ROS 2 shell. Tests pass a
domain of their own to each test.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from charm_core.cli_help import HelpFormatter
from charm_ros.paths import share_path

SHM_DIR = Path("/dev/shm")
_SHM_PATTERNS = ("fastdds_*", "sem.fastdds_*")


def fastdds_profile() -> Path:
    """Path of the shipped Fast DDS XML profile."""
    return share_path("config", "fastdds.xml")


DEFAULT_DOMAIN_ID = 0


def pick_domain_id(seed: int) -> int:
    """A ROS_DOMAIN_ID in 10..99 from `seed`, for runs that must not meet (one per test)."""
    return 10 + seed % 90


def ros_environment(domain_id: int | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """Return a copy of `base` (default: os.environ) with the DDS settings of this package applied.

    An explicit `domain_id` wins; otherwise an exported ROS_DOMAIN_ID is kept, else DEFAULT_DOMAIN_ID.
    """
    env = dict(os.environ if base is None else base)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_STATIC_PEERS", None)
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(fastdds_profile())
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    else:
        env.setdefault("ROS_DOMAIN_ID", str(DEFAULT_DOMAIN_ID))
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Nodes share the cores with other nodes: OpenMP threads that spin while waiting make small torch ops
    # up to 100x slower under contention; passive waiting keeps inference latency stable.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def apply(domain_id: int | None = None) -> dict[str, str]:
    """Apply `ros_environment` to this process (before rclpy.init) and return it."""
    env = ros_environment(domain_id)
    os.environ.update(env)
    return env


def _paths_in_use() -> set[str]:
    """Every file some live process has open or mapped (what Fast DDS uses for SHM segments/locks)."""
    used: set[str] = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fd_dir = f"/proc/{pid}/fd"
            for fd in os.listdir(fd_dir):
                try:
                    used.add(os.readlink(f"{fd_dir}/{fd}"))
                except OSError:
                    pass
            with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
                for line in maps:
                    parts = line.split(maxsplit=5)
                    if len(parts) == 6:
                        used.add(parts[5].strip())
        except OSError:  # process ended or is not ours
            continue
    return used


def clear_stale_shm(shm_dir: Path = SHM_DIR) -> list[Path]:
    """Remove Fast DDS shared-memory files that no live process holds; return what was removed.

    Files of running participants are left alone, so this is safe while other DDS programs run.
    """
    candidates = [p for pattern in _SHM_PATTERNS for p in shm_dir.glob(pattern)]
    if not candidates:
        return []
    used = _paths_in_use()
    removed = []
    for path in candidates:
        if str(path) in used:
            continue
        # a segment's lock file (<name>_el) is held open while the segment lives
        if not path.name.endswith("_el") and f"{path}_el" in used:
            continue
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m charm_ros.env", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--domain-id", type=int, default=None,
                        help=f"ROS_DOMAIN_ID (default: the exported one, else {DEFAULT_DOMAIN_ID})")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="command to run (after --)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    env = ros_environment(args.domain_id)
    if not command:
        for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE"):
            print(f"export {key}={env[key]}")
        return 0
    clear_stale_shm()
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 130
    finally:
        clear_stale_shm()


if __name__ == "__main__":
    sys.exit(main())
