"""The sim rig over DDS: the frames it rendered ahead, then live ones, are the drive at their rig time."""
from __future__ import annotations

import json
import threading

import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from charm_core.data.synthetic import World
from charm_ros.tools.launcher import Launcher, NodeSpec, resolve_executable
from dds_helpers import wait_until
from support import ROOT


def test_the_rig_publishes_the_frames_it_rendered_ahead_and_then_renders_live(child_env, rclpy_node):
    """prerender: the first frames are rendered before the rig starts; what it publishes, ahead or live
    after them, is the drive at the frame's rig time (matched to the image by the status' stamp)."""
    from charm_ros.msgs.fields import stamp_to_ns
    from charm_ros.msgs.images import image_to_numpy

    lock, images, frame_of = threading.Lock(), {}, {}

    def on_image(msg: Image) -> None:
        with lock:
            images[stamp_to_ns(msg.header.stamp)] = image_to_numpy(msg)

    def on_status(msg: String) -> None:
        status = json.loads(msg.data)
        with lock:
            frame_of[status["stamp"][0] * 10**9 + status["stamp"][1]] = status["frame"]

    qos = QoSProfile(depth=20, reliability=ReliabilityPolicy.BEST_EFFORT)
    rclpy_node.create_subscription(Image, "/sim_rig/rgb/image", on_image, qos)
    rclpy_node.create_subscription(String, "/sim_rig/status", on_status, 20)
    rig = NodeSpec(command=[resolve_executable("charm_sim_rig")], name="sim_rig",
                   params_files=[str(ROOT / "config" / "sim_rig.param.yaml")],
                   parameters={"modalities": "rgb", "size": [48, 64], "prerender": 0.5, "start_delay": 1.0})

    def published() -> dict[int, np.ndarray]:
        with lock:
            return {frame_of[s]: img for s, img in images.items() if s in frame_of}

    def ahead_and_live() -> dict[int, np.ndarray] | None:
        """Frames seen once some of the 5 rendered ahead and 3 rendered live are in."""
        seen = published()
        return seen if any(k < 5 for k in seen) and sum(k >= 5 for k in seen) >= 3 else None

    with Launcher([rig], env=child_env):
        got = wait_until(ahead_and_live, 60)
    assert got, f"frames seen: {sorted(published())}"
    world = World(seed=7, size_hw=(48, 64), fps=10.0)
    for k in sorted(got):
        np.testing.assert_array_equal(got[k], world.frame_at(k / 10.0).rgb, err_msg=f"frame {k}")
