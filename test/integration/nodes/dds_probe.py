"""DDS smoke-test peer: `pub` sends big best-effort Images and PointCloud2s, `sub` counts and checks them.

Run as two separate processes so the exchange really crosses process boundaries (SHM / loopback UDP).
"""
import argparse
import json
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2, PointField

IMAGE_HW = (1024, 1024)
CLOUD_POINTS = 100_000


def qos(depth: int) -> QoSProfile:
    return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)


def make_image(i: int) -> Image:
    pixels = np.full((*IMAGE_HW, 3), i % 251, np.uint8)
    msg = Image(height=IMAGE_HW[0], width=IMAGE_HW[1], encoding="rgb8", step=IMAGE_HW[1] * 3)
    msg.header.frame_id = str(i)
    msg.data = pixels.tobytes()
    return msg


def make_cloud(i: int) -> PointCloud2:
    points = np.full((CLOUD_POINTS, 4), float(i), np.float32)
    fields = [PointField(name=n, offset=4 * k, datatype=PointField.FLOAT32, count=1)
              for k, n in enumerate("xyz")] + [PointField(name="intensity", offset=12, datatype=7, count=1)]
    msg = PointCloud2(height=1, width=CLOUD_POINTS, fields=fields, is_bigendian=False, point_step=16,
                      row_step=16 * CLOUD_POINTS, is_dense=True)
    msg.header.frame_id = str(i)
    msg.data = points.tobytes()
    return msg


def publish(node, count: int, rate: float) -> int:
    image_pub = node.create_publisher(Image, "probe/image", qos(5))
    cloud_pub = node.create_publisher(PointCloud2, "probe/points", qos(5))
    deadline = time.monotonic() + 20
    while image_pub.get_subscription_count() < 1 or cloud_pub.get_subscription_count() < 1:
        if time.monotonic() > deadline:
            print("no subscriber matched", file=sys.stderr)
            return 2
        time.sleep(0.05)
    time.sleep(1.0)  # let the subscriber's side of the match complete too
    for i in range(count):
        image_pub.publish(make_image(i))
        cloud_pub.publish(make_cloud(i))
        time.sleep(1.0 / rate)
    time.sleep(1.0)
    return 0


def subscribe(node, count: int, timeout: float) -> int:
    got = {"image": [], "points": []}
    bad = []

    def on_image(msg: Image) -> None:
        i = int(msg.header.frame_id)
        pixels = np.frombuffer(msg.data, np.uint8)
        if pixels.size != IMAGE_HW[0] * IMAGE_HW[1] * 3 or pixels[0] != i % 251 or pixels[-1] != i % 251:
            bad.append(f"image {i}")
        got["image"].append(i)

    def on_cloud(msg: PointCloud2) -> None:
        i = int(msg.header.frame_id)
        points = np.frombuffer(msg.data, np.float32)
        if msg.width != CLOUD_POINTS or points.size != CLOUD_POINTS * 4 or points[-1] != i:
            bad.append(f"cloud {i}")
        got["points"].append(i)

    node.create_subscription(Image, "probe/image", on_image, qos(count))
    node.create_subscription(PointCloud2, "probe/points", on_cloud, qos(count))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and min(len(v) for v in got.values()) < count:
        rclpy.spin_once(node, timeout_sec=0.1)
    print(json.dumps({"images": sorted(got["image"]), "clouds": sorted(got["points"]), "bad": bad}), flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["pub", "sub"])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    rclpy.init()
    node = rclpy.create_node(f"dds_probe_{args.mode}")
    try:
        return publish(node, args.count, args.rate) if args.mode == "pub" else subscribe(node, args.count, args.timeout)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
