"""Test peer: publishes one modality of pre-rendered synthetic frames (an .npz) at a fixed rate.

Stamps sit on a shared time grid (multiples of 1/rate of the system clock), so several of these
processes, one per sensor, produce matching stamps like a hardware-triggered rig.
`--garbage` instead publishes malformed messages of every kind on the modality's topic.
"""
import argparse
import sys
import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from charm_ros.msgs.camera_info import k_to_camera_info
from charm_ros.msgs.images import numpy_to_image
from charm_ros.msgs.pointclouds import xyzi_to_pointcloud2


def garbage(modality: str, i: int, header: Header):
    """A rotating selection of broken messages for `modality`."""
    kind = i % 4
    if modality == "lidar":
        if kind == 0:
            return PointCloud2(header=header, height=1, width=0, point_step=16, row_step=0)   # empty cloud
        if kind == 1:
            msg = xyzi_to_pointcloud2(np.full((100, 4), np.nan, np.float32), header)             # all NaN
            return msg
        if kind == 2:
            msg = xyzi_to_pointcloud2(np.ones((100, 4), np.float32), header)
            msg.data = msg.data[:50]                                                            # truncated
            return msg
        return PointCloud2(header=header, height=1, width=10, point_step=4, row_step=40,
                           fields=[PointField(name="q", offset=0, datatype=7, count=1)], data=bytes(40))
    if modality == "depth" and kind == 0:
        return numpy_to_image(np.full((64, 64), np.nan, np.float32), "32FC1", header)            # NaN depth
    if kind == 1:
        return Image(header=header, height=64, width=64, encoding="nv21", step=64, data=bytes(64 * 64))
    if kind == 2:
        return Image(header=header, height=64, width=64, encoding="rgb8", step=192, data=bytes(100))   # truncated
    return numpy_to_image(np.zeros((32, 48, 3), np.uint8), "rgb8", header)                     # wrong size


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("frames", help=".npz with rgb, depth, event, lidar_<i>, K")
    parser.add_argument("modality", choices=["rgb", "depth", "event", "lidar"])
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--prefix", default="/test")
    parser.add_argument("--garbage", action="store_true")
    parser.add_argument("--no-camera-info", action="store_true", help="images only (CameraInfo comes from elsewhere)")
    parser.add_argument("--reliable", action="store_true", help="publish reliable (default best effort)")
    args = parser.parse_args()
    data = np.load(args.frames)
    n = len(data["rgb"])
    rclpy.init()
    node = rclpy.create_node(f"pub_{args.modality}{'_garbage' if args.garbage else ''}")
    qos = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST,
                     reliability=ReliabilityPolicy.RELIABLE if args.reliable else ReliabilityPolicy.BEST_EFFORT)
    topic = f"{args.prefix}/{args.modality}/{'points' if args.modality == 'lidar' else 'image'}"
    pub = node.create_publisher(PointCloud2 if args.modality == "lidar" else Image, topic, qos)
    info = node.create_publisher(CameraInfo, f"{args.prefix}/{args.modality}/camera_info", qos) \
        if args.modality in ("rgb", "depth") and not args.no_camera_info else None
    period = 1.0 / args.rate
    i = 0
    try:
        while rclpy.ok():
            tick = (int(time.time() / period) + 1) * period
            time.sleep(max(0.0, tick - time.time()))
            sec = int(tick)
            header = Header(stamp=Time(sec=sec, nanosec=int(round((tick - sec) * 1e9))), frame_id="camera")
            k = i % n
            if args.garbage:
                pub.publish(garbage(args.modality, i, header))
            elif args.modality == "lidar":
                pub.publish(xyzi_to_pointcloud2(data[f"lidar_{k}"], header, frame_id="lidar"))
            elif args.modality == "depth":
                pub.publish(numpy_to_image(data["depth"][k], "32FC1", header))
            else:
                pub.publish(numpy_to_image(data[args.modality][k], "rgb8", header))
            if info is not None and not args.garbage:
                info.publish(k_to_camera_info(data["K"], data["rgb"].shape[1:3], header))
            i += 1
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
