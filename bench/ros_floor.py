"""The latency floor under bench/node_latency.py: its publisher and receiver, with a do-nothing rclpy
relay in place of the node.

    .venv/bin/python -m charm_ros.env -- .venv/bin/python bench/ros_floor.py [--seconds 6]

The relay, a Python process like the node, subscribes to the same topics with the same QoS and, once
every message of a frame (each sensor and its CameraInfo) is in, publishes a 256x256 mono8 mask with
the frame's stamp; this process takes latency = arrival - stamp as node_latency does. What remains is
DDS both ways and rclpy's executor: the part of node_latency's "node overhead" that no work inside the
node can remove.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time

import node_latency as bench

from charm_core.modalities import all_subsets, subset_name

HAS_CAMERA_INFO = ("rgb", "depth")


def messages_per_frame(subset: str) -> int:
    """Each sensor's message, plus a CameraInfo for each camera that has one."""
    sensors = subset.split("+")
    return len(sensors) + sum(m in HAS_CAMERA_INFO for m in sensors)


def relay(subset: str) -> None:
    """Child process: republish a mask once all messages of a stamp arrived."""
    import numpy as np
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from charm_ros.msgs.images import numpy_to_image

    sensors = subset.split("+")
    expected = messages_per_frame(subset)
    rclpy.init()
    node = rclpy.create_node("charm")
    mask = numpy_to_image(np.zeros((256, 256), np.uint8), "mono8")
    out = node.create_publisher(Image, "/charm/mask", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    arrived: dict[tuple[int, int], int] = {}

    def on_message(msg) -> None:
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        arrived[stamp] = arrived.get(stamp, 0) + 1
        if arrived[stamp] == expected:
            del arrived[stamp]
            mask.header = msg.header
            out.publish(mask)

    inputs = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    for m in sensors:
        kind, topic = (PointCloud2, "points") if m == "lidar" else (Image, "image")
        node.create_subscription(kind, f"{bench.PREFIX}/{m}/{topic}", on_message, inputs)
        if m in HAS_CAMERA_INFO:
            node.create_subscription(CameraInfo, f"{bench.PREFIX}/{m}/camera_info", on_message, inputs)
    rclpy.spin(node)  # until the bench kills it


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per subset")
    parser.add_argument("--subsets", nargs="+", default=[subset_name(s) for s in all_subsets()])
    parser.add_argument("--relay", metavar="SUBSET", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.relay:
        relay(args.relay)
        return 0

    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from charm_ros.msgs.fields import stamp_to_sec

    frames, control = bench.prepare(args.subsets[0], "ros_floor_")
    arrivals: list[tuple[float, float]] = []
    lock = threading.Lock()
    rclpy.init()
    probe = rclpy.create_node("bench_probe")

    def on_mask(msg: Image) -> None:
        now = time.time()
        with lock:
            arrivals.append((now, stamp_to_sec(msg.header.stamp)))

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    probe.create_subscription(Image, "/charm/mask", on_mask, reliable)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            rclpy.spin_once(probe, timeout_sec=0.1)

    spinner = threading.Thread(target=spin)
    spinner.start()
    publisher = bench.start_publisher(frames, control)
    rows = []
    try:
        for name in args.subsets:
            bench.set_control(control, f"{name} 10")
            child = subprocess.Popen([sys.executable, __file__, "--relay", name])
            try:
                time.sleep(3.0)  # discovery
                t0 = time.time()
                time.sleep(args.seconds)
                with lock:
                    lat = [(a - s) * 1e3 for a, s in arrivals if t0 <= a < t0 + args.seconds]
            finally:
                child.kill()
                child.wait()
            rows.append((name, lat))
        bench.set_control(control, "stop 1")
    finally:
        publisher.wait(timeout=10)
        stop.set()
        spinner.join()
        probe.destroy_node()
        rclpy.try_shutdown()

    print("\n| subset | messages per frame | floor ms (median) | p90 ms | frames/s |\n|---|---|---|---|---|")
    for name, lat in rows:
        median = statistics.median(lat) if lat else float("nan")
        p90 = sorted(lat)[int(0.9 * len(lat))] if lat else float("nan")
        print(f"| {name} | {messages_per_frame(name)} | {median:.1f} | {p90:.1f} | {len(lat) / args.seconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
