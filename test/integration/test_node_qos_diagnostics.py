"""QoS mismatches over real DDS: a publisher the node's input cannot match and an output subscriber asking
for more than the node offers are named on /diagnostics with the fix, and the warning clears once fixed.
How soon the warning comes is measured by bench/node_behaviour.py."""
from __future__ import annotations

import time

from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from charm_ros.tools.launcher import Launcher
from dds_helpers import Statuses, node_on, publish, stop, wait_until

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
BEST_EFFORT = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
# the node names a mismatch at its next diagnostics period (1 s; bench/node_behaviour.py measures it); this
# fails only a node that never names it
WARN_S = 15.0


def test_a_qos_mismatch_is_named_on_diagnostics_and_clears_when_fixed(frames_npz, random_checkpoint, child_env,
                                                                      rclpy_node):
    statuses = Statuses(rclpy_node)
    spec = node_on(random_checkpoint, "/qos", ("rgb",))
    spec.parameters.update({"qos.input_reliability": "reliable", "qos.output_reliability": "best_effort"})
    masks: list[float] = []
    with Launcher([spec], env=child_env):
        assert statuses.first("pipeline", 0.0, 60, lambda lv, m: "no sensor input alive" in m)
        best_effort = publish(frames_npz, "rgb", "/qos", child_env)
        try:
            assert wait_until(lambda: rclpy_node.count_publishers("/qos/rgb/image") > 0, 30)
            seen = time.monotonic()
            hit = statuses.first("rgb", seen, WARN_S,
                                 lambda lv, m: lv == 1 and "/qos/rgb/image" in m and "reliability" in m)
            assert hit, f"no WARN naming the topic and the policy within {WARN_S:.0f} s of the publisher appearing"
            assert "qos.input_reliability to best_effort" in hit[2]
            # an output subscriber asking for more than the node offers is named too
            rclpy_node.create_subscription(Image, "/charm/mask", lambda m: None, RELIABLE)
            assert statuses.first("outputs", time.monotonic(), WARN_S,
                                  lambda lv, m: lv == 1 and "/charm/mask" in m and "reliability" in m)
        finally:
            stop([best_effort])
        rclpy_node.create_subscription(Image, "/charm/mask", lambda m: masks.append(time.monotonic()), BEST_EFFORT)
        reliable = publish(frames_npz, "rgb", "/qos", child_env, "--reliable")
        try:
            fixed = time.monotonic()
            assert statuses.first("rgb", fixed, 30, lambda lv, m: lv == 0 and m == "alive"), "the WARN never cleared"
            assert wait_until(lambda: len(masks) >= 3, 30), "no masks from the reliable publisher"
        finally:
            stop([reliable])
