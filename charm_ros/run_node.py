"""The one main() of every node in this package: init, build, spin, and always clean up.

A node that cannot start (bad parameters, missing checkpoint) logs one fatal line and exits 2; Ctrl-C,
an external shutdown or a callback raising SystemExit (a node that decided it is done) exit cleanly.
"""
from __future__ import annotations

from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node


def run_node(factory: Callable[[], Node], name: str, args: list[str] | None = None,
             startup_errors: tuple[type[BaseException], ...] = (ValueError, OSError)) -> int:
    rclpy.init(args=args)
    try:
        node = factory()
    except startup_errors as exc:
        rclpy.logging.get_logger(name).fatal(f"cannot start: {exc}")
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    code = 0
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SystemExit as done:
        code = int(done.code or 0)
    finally:
        stop = getattr(node, "shutdown", None)
        if callable(stop):
            stop()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return code
