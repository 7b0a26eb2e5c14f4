"""The one main() of every node in this package: init, build, spin, and always clean up.

A node that cannot start (bad parameters, missing checkpoint) logs one fatal line and exits 2; Ctrl-C,
an external shutdown or a callback raising SystemExit (a node that decided it is done) exit cleanly.
A received message that rclpy itself cannot turn into a Python object is dropped and reported to the
node (`on_undecodable(topic, error)` if it has one), never the end of the node.
"""
from __future__ import annotations

from typing import Any, Callable

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
    report = getattr(node, "on_undecodable", None)
    if not callable(report):
        logger = node.get_logger()

        def report(topic: str, error: Exception) -> None:
            logger.warning(f"dropped an undecodable message on {topic}: {error}", throttle_duration_sec=5.0)
    executor = TolerantExecutor(report)
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


class TolerantExecutor(SingleThreadedExecutor):
    """A SingleThreadedExecutor that survives a message rclpy fails to convert.

    rclpy raises from its own take (before any callback) when converting a received message fails,
    e.g. "Unable to convert call argument '0' to Python object" (ros2/rclpy#848; seen here once
    under load with best-effort sensor topics), and the executor would end spin(). Such a message
    is dropped and reported instead; the subscription keeps working.
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
