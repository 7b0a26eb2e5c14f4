"""The node on the sim rig over real DDS: ~/labeled_points carry the mask at each point's projection and,
with outputs.resolution camera, every output is at the camera's resolution with its K."""
from __future__ import annotations

import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from charm_ros.runtime.parameters import load_param_file
from charm_ros.tools.launcher import Launcher, NodeSpec, resolve_executable
from dds_helpers import PARAMS, wait_until
from support import ROOT

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
BEST_EFFORT = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)


def test_labeled_points_and_camera_resolution_on_the_rig(random_checkpoint, child_env, rclpy_node):
    rig = NodeSpec(command=[resolve_executable("charm_sim_rig")], name="sim_rig",
                   params_files=[str(ROOT / "config" / "sim_rig.param.yaml")],
                   parameters={"size": [240, 320], "fps": 5.0})
    node = NodeSpec(command=[resolve_executable("charm_node")], name="charm",
                    params_files=[str(PARAMS)],
                    # patient sync: on a loaded machine the rig renders slower than its 10 Hz, and a frame
                    # must still wait for its LiDAR sweep
                    parameters={"model.checkpoint": str(random_checkpoint), "model.backend": "torch",
                                "outputs.resolution": "camera",
                                "depth.enabled": False, "event.enabled": False, "model.input_size": [128, 128],
                                "rgb.stale_timeout": 3.0, "lidar.stale_timeout": 3.0, "sync.timeout": 1.0},
                    remappings=[("~/rgb/image", "/sim_rig/rgb/image"),
                                ("~/rgb/camera_info", "/sim_rig/rgb/camera_info"),
                                ("~/lidar/points", "/sim_rig/lidar/points")])
    got: dict[str, dict] = {"cloud": {}, "mask": {}, "confidence": {}, "info": {}, "rig_info": {}}

    def keep(kind):
        return lambda msg: got[kind].__setitem__((msg.header.stamp.sec, msg.header.stamp.nanosec), msg)
    for kind, msg_type, topic in [("cloud", PointCloud2, "/charm/labeled_points"), ("mask", Image, "/charm/mask"),
                                  ("confidence", Image, "/charm/confidence"),
                                  ("info", CameraInfo, "/charm/camera_info"),
                                  ("rig_info", CameraInfo, "/sim_rig/rgb/camera_info")]:
        rclpy_node.create_subscription(msg_type, topic, keep(kind), RELIABLE if kind != "rig_info" else BEST_EFFORT)

    def matched() -> list:
        return [s for s in list(got["cloud"]) if all(s in got[k] for k in ("mask", "confidence", "info", "rig_info"))]
    with Launcher([rig, node], env=child_env):
        assert wait_until(lambda: len(matched()) >= 5, 90), {k: len(v) for k, v in got.items()}
    T = np.reshape(load_param_file(PARAMS)["geometry.lidar_to_camera"], (4, 4))
    for stamp in matched()[:5]:
        cloud, mask, info = got["cloud"][stamp], got["mask"][stamp], got["info"][stamp]
        assert (mask.height, mask.width) == (got["confidence"][stamp].height, got["confidence"][stamp].width) == \
            (info.height, info.width) == (240, 320), "outputs.resolution camera: the camera's 320x240"
        np.testing.assert_array_equal(info.k, got["rig_info"][stamp].k)
        assert cloud.header.frame_id == "lidar"
        fields = {f.name: f.offset for f in cloud.fields}
        raw = np.frombuffer(bytes(cloud.data), np.uint8).reshape(-1, cloud.point_step)
        xyz = np.stack([raw[:, fields[n]:fields[n] + 4].copy().view("<f4")[:, 0] for n in "xyz"], 1)
        label = raw[:, fields["label"]]
        labels = np.frombuffer(bytes(mask.data), np.uint8).reshape(240, 320)
        K = np.reshape(info.k, (3, 3))
        cam = xyz.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.rint(K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 2])
            v = np.rint(K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2])
            inside = (cam[:, 2] > 0.1) & (u >= 0) & (u < 320) & (v >= 0) & (v < 240)
        assert inside.sum() > 100 and (~inside).sum() > 100
        np.testing.assert_array_equal(label[inside], labels[v[inside].astype(int), u[inside].astype(int)])
        assert (label[~inside] == 255).all()
