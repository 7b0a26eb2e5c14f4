"""CameraInfo latched (transient local) before the node subscribed: a static calibration publisher
sends it once, and it never reaches the node's volatile subscription.

While a camera has no CameraInfo, a latched publisher on its topic gets a transient-local
subscription that takes the stored message and is then dropped. It is made only for such a
publisher: to a volatile one it would be an incompatible-QoS warning in that publisher's log.
"""
from __future__ import annotations

from typing import Callable

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class LatchedCameraInfo:
    def __init__(self, node: Node, topics: dict[str, str], on_info: Callable[[str, CameraInfo], None]) -> None:
        self.node, self.topics, self.on_info = node, topics, on_info
        self.subs: dict = {}  # sensor -> its transient-local subscription; None: its one message was taken

    def poll(self, has_camera: Callable[[str], bool]) -> None:
        """Subscribe latched where a camera still lacks a CameraInfo and a latched publisher has one."""
        for m, topic in self.topics.items():
            if has_camera(m) or m in self.subs:
                continue
            if any(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                   and p.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                   for p in self.node.get_publishers_info_by_topic(topic)):
                self.subs[m] = self.node.create_subscription(CameraInfo, topic, lambda msg, m=m: self._take(m, msg),
                                                             LATCHED)

    def _take(self, sensor: str, msg: CameraInfo) -> None:
        self.on_info(sensor, msg)
        sub, self.subs[sensor] = self.subs.get(sensor), None
        if sub is not None:
            self.node.destroy_subscription(sub)

    def close(self) -> None:
        for sub in self.subs.values():
            if sub is not None:
                self.node.destroy_subscription(sub)
        self.subs.clear()
