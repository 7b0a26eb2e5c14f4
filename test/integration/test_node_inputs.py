"""What the node makes of its inputs, over real DDS: a CameraInfo latched before it started, a sensor left
out for want of a CameraInfo, a slower sensor in every frame, sim time without a /clock."""
from __future__ import annotations

import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo

from charm_ros.tools.launcher import Launcher, NodeSpec, resolve_executable
from dds_helpers import OK_LEVEL, PARAMS, Recorder, node_on, publish, stop, subscribe, wait_until


def test_a_camera_info_latched_before_the_node_started_is_taken(frames_npz, random_checkpoint, child_env,
                                                                 rclpy_node):
    """A calibration published once, latched (transient local), before the node subscribed, as a static
    CameraInfo publisher does: without it depth cannot be encoded and the node would publish nothing."""
    from charm_ros.msgs.camera_info import k_to_camera_info

    data = np.load(frames_npz)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    info_pub = rclpy_node.create_publisher(CameraInfo, "/latched/depth/camera_info", latched)
    info_pub.publish(k_to_camera_info(data["K"], data["depth"].shape[1:3]))
    rec = Recorder()
    subscribe(rclpy_node, rec)
    depth = publish(frames_npz, "depth", "/latched", child_env, "--no-camera-info")
    try:
        with Launcher([node_on(random_checkpoint, "/latched", ("depth",))], env=child_env):
            assert rec.wait_subset("depth", 0.0, 60), "depth never segmented: the latched CameraInfo was missed"
            assert rec.wait_masks(5, time.monotonic(), 30)
    finally:
        stop([depth])


def test_a_sensor_left_out_for_want_of_a_camera_info_is_reported(frames_npz, random_checkpoint, child_env,
                                                                  rclpy_node):
    """RGB without CameraInfo still segments; LiDAR cannot be projected without one. Before, /diagnostics
    said OK 'running on rgb+lidar' while every mask came from RGB alone."""
    rec = Recorder()
    subscribe(rclpy_node, rec)
    statuses: dict[str, tuple[int, str]] = {}

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            statuses[status.name.rsplit(": ", 1)[1]] = (status.level[0], status.message)

    rclpy_node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    pubs = [publish(frames_npz, m, "/nocal", child_env, "--no-camera-info") for m in ("rgb", "lidar")]
    try:
        with Launcher([node_on(random_checkpoint, "/nocal", ("rgb", "lidar"))], env=child_env):
            assert rec.wait_masks(5, 0.0, 60), "RGB alone must still be segmented"
            # the LiDAR publisher may start after the RGB masks flow: its status says "no message yet" till then
            assert wait_until(lambda: "left out of frames" in statuses.get("lidar", (OK_LEVEL, ""))[1], 30), \
                f"LiDAR never reported as left out: {statuses.get('lidar')}"
            assert rec.subset_at_end() == "rgb"
            assert statuses["lidar"][0] == 1 and "left out of frames: no CameraInfo" in statuses["lidar"][1]
            assert "/nocal/rgb/camera_info" in statuses["lidar"][1]
            assert statuses["pipeline"] == (1, "degraded: running on rgb (lidar left out)")
    finally:
        stop(pubs)


def test_a_slower_sensor_goes_into_every_frame(frames_npz, random_checkpoint, child_env, rclpy_node):
    """A 30 Hz camera with a 10 Hz LiDAR: every mask uses both (the LiDAR sweep nearest to it), including
    the frames between sweeps; ~/subset does not flicker between rgb+lidar and rgb."""
    rec = Recorder()
    subscribe(rclpy_node, rec)
    pubs = [publish(frames_npz, "rgb", "/mixed", child_env, "--rate", "30"),
            publish(frames_npz, "lidar", "/mixed", child_env, "--rate", "10")]
    spec = node_on(random_checkpoint, "/mixed", ("rgb", "lidar"))
    spec.parameters["sync.timeout"] = 1.0   # patient sync: a sweep late on a loaded machine is still waited for
    try:
        with Launcher([spec], env=child_env):
            assert rec.wait_subset("rgb+lidar", 0.0, 60), "the node never ran on rgb+lidar"
            assert rec.wait_masks(5, time.monotonic(), 30)
            t0 = time.monotonic()
            subsets = rec.wait_subsets(20, t0, 60)
            masks = rec.masks_between(t0, time.monotonic())
    finally:
        stop(pubs)
    # one camera frame in three is at a sweep: were only those given the LiDAR, 2/3 would say "rgb"; with
    # the nearest sweep in every frame nearly all say rgb+lidar (the odd one out under heavy load)
    assert len(subsets) >= 20 and subsets.count("rgb+lidar") >= 0.75 * len(subsets), subsets
    between_sweeps = [s for _, s, _ in masks if abs(s * 10 - round(s * 10)) > 1e-3]
    assert between_sweeps, "no mask from a camera frame between two LiDAR sweeps"
    assert all(abs(s * 30 - round(s * 30)) < 1e-3 for _, s, _ in masks), "masks carry the camera's stamps"


def test_sim_time_without_a_clock_is_reported_not_silent(random_checkpoint, child_env, rclpy_node):
    """use_sim_time with nobody publishing /clock freezes the node clock (liveness, sync timeouts):
    /diagnostics must still come and say so."""
    rec = Recorder()
    subscribe(rclpy_node, rec)
    node_spec = NodeSpec(command=[resolve_executable("charm_node")], name="charm", params_files=[str(PARAMS)],
                         parameters={"model.checkpoint": str(random_checkpoint), "use_sim_time": True,
                                     "model.backend": "torch"})
    with Launcher([node_spec], env=child_env):
        message = rec.wait_level(2, 0.0, 60)
    assert message is not None and "/clock" in message, message
