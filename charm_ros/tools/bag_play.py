"""`charm-bag-play`: publish a rosbag2 (sqlite3 or mcap) on the live graph, like `ros2 bag play`.

For pip installs, where `ros2 bag` does not exist. Messages go out serialized, exactly as recorded
(headers untouched), paced by their receive times (`--rate`); `--clock` also publishes /clock so
nodes running with use_sim_time follow the bag's time. A topic recorded from a latched (transient
local) publisher, such as a CameraInfo sent once, is published latched again, as `ros2 bag play`
does, so a node that starts later still gets it. Topics whose type this Python environment cannot
import are skipped and listed.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import Connection, QosDurability
from rosbags.typesys import Stores, get_typestore
from tqdm import tqdm

from charm_core.cli_help import HelpFormatter
from charm_ros.node.host import init_with_python_signals


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> sensor_msgs.msg.Image, or None if not importable here."""
    package, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError):
        return None


def recorded_latched(conn: Connection) -> bool:
    """Whether the bag recorded this topic from a transient-local (latched) publisher."""
    profiles = getattr(conn.ext, "offered_qos_profiles", None) or []
    return any(getattr(q, "durability", None) == QosDurability.TRANSIENT_LOCAL for q in profiles)


def play(bag: Path, rate: float = 1.0, clock: bool = False, topics: set[str] | None = None,
         reliable: bool = False, start_delay: float = 1.0, progress: bool = True) -> dict[str, int]:
    """Publish the bag once; returns messages published per topic. The bag is opened and checked before
    ROS starts: AnyReaderError for an unreadable bag, ValueError for topics it does not have."""
    if rate <= 0:
        raise ValueError("rate must be > 0")
    with AnyReader([bag], default_typestore=get_typestore(Stores.LATEST)) as reader:
        recorded = {c.topic for c in reader.connections}
        absent = sorted((topics or set()) - recorded)
        if absent:
            raise ValueError(f"topics not in the bag: {', '.join(absent)}; it has {', '.join(sorted(recorded))}")
        init_with_python_signals()
        node = rclpy.create_node("charm_bag_play")
        try:
            return _publish(reader, node, rate, clock, topics, reliable, start_delay, progress)
        finally:
            node.destroy_node()
            rclpy.try_shutdown()


def _publish(reader: AnyReader, node: Node, rate: float, clock: bool, topics: set[str] | None, reliable: bool,
             start_delay: float, progress: bool) -> dict[str, int]:
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pubs, skipped = {}, []
    for conn in reader.connections:
        if topics and conn.topic not in topics:
            continue
        cls = message_class(conn.msgtype)
        if cls is None:
            skipped.append(f"{conn.topic} ({conn.msgtype})")
            continue
        pubs[conn.topic] = node.create_publisher(cls, conn.topic, latched if recorded_latched(conn) else qos)
    if skipped:
        node.get_logger().warning(f"not importable here, skipped: {', '.join(skipped)}")
    clock_pub = None
    if clock:
        from rosgraph_msgs.msg import Clock
        clock_pub = node.create_publisher(Clock, "/clock", 10)
    time.sleep(start_delay)  # let subscribers match before the first message
    published: dict[str, int] = {}
    start_wall = time.monotonic()
    first_log = None
    conns = [c for c in reader.connections if c.topic in pubs]
    with tqdm(total=sum(c.msgcount for c in conns) or None, desc="charm-bag-play", unit="msg",
              disable=not progress) as bar:
        for conn, log_time, raw in reader.messages(connections=conns):
            first_log = log_time if first_log is None else first_log
            due = start_wall + (log_time - first_log) * 1e-9 / rate
            time.sleep(max(0.0, due - time.monotonic()))
            if clock_pub is not None:
                msg = Clock()
                msg.clock.sec, msg.clock.nanosec = divmod(log_time, 1_000_000_000)
                clock_pub.publish(msg)
            pubs[conn.topic].publish(bytes(raw))
            published[conn.topic] = published.get(conn.topic, 0) + 1
            bar.update()
    time.sleep(0.5)  # let the last messages leave before the participant goes away
    return published


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="charm-bag-play", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("bag", type=Path)
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    parser.add_argument("--clock", action="store_true", help="publish /clock from the bag's receive times")
    parser.add_argument("--topics", nargs="+", help="only these topics")
    parser.add_argument("--reliable", action="store_true", help="publish with reliable QoS (default best effort)")
    parser.add_argument("--start-delay", type=float, default=1.0, help="seconds to wait for subscribers")
    args = parser.parse_args(argv)
    if not args.bag.exists():
        parser.error(f"no bag at {args.bag}")
    try:
        counts = play(args.bag, args.rate, args.clock, set(args.topics) if args.topics else None, args.reliable,
                      args.start_delay)
    except KeyboardInterrupt:
        return 130
    except AnyReaderError as exc:
        parser.error(f"cannot read the bag {args.bag}: {exc}")
    except ValueError as exc:
        parser.error(str(exc))
    for topic, n in sorted(counts.items()):
        print(f"{n:6d}  {topic}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
