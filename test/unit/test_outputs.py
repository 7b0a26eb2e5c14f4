"""The node's outputs without a ROS graph (msgs/outputs.py): camera-resolution outputs are the camera's pixels
and K, labeled points carry the mask at each point's own projection, the point cloud layout round-trips."""
from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from std_msgs.msg import Header

from charm_core.data.synthetic import World
from charm_core.inference import Predictor
from charm_ros.msgs.camera_info import k_to_camera_info
from charm_ros.msgs.images import numpy_to_image
from charm_ros.msgs.pointclouds import pointcloud2_to_xyzi, xyzi_to_pointcloud2
from charm_ros.msgs.outputs import NO_DATA, output_messages
from charm_ros.runtime.engine import Engine
from charm_ros.runtime.node_config import validate

CAMERA_HW = (240, 320)


@pytest.fixture(scope="module")
def world_frame():
    return World(seed=4, size_hw=CAMERA_HW).frame_at(2.0)


@pytest.fixture(scope="module")
def predictor(random_checkpoint):
    return Predictor.from_checkpoint(random_checkpoint, device="cpu")


def run_engine(predictor, f, resolution: str):
    """One rgb+lidar frame of `f` through an Engine as the node feeds it (messages, CameraInfo)."""
    config = validate({"depth.enabled": False, "event.enabled": False, "model.input_size": [128, 128],
                       "outputs.resolution": resolution,
                       "geometry.lidar_to_camera": [float(x) for x in f.geometry.T_cam_lidar.ravel()]})
    engine = Engine(predictor, config)
    header = Header(stamp=Time(sec=5), frame_id="camera")
    engine.accept_camera_info("rgb", k_to_camera_info(f.K, CAMERA_HW, header))
    engine.accept("rgb", numpy_to_image(f.rgb, "rgb8", header), 5.0)
    engine.accept("lidar", xyzi_to_pointcloud2(f.lidar, header, frame_id="lidar"), 5.0)
    frames = engine.due(5.0)
    assert len(frames) == 1 and set(frames[0].data) == {"rgb", "lidar"}
    return engine, engine.run(frames[0], 5.0)


def test_camera_resolution_outputs_are_the_cameras_pixels_and_K(predictor, world_frame):
    f = world_frame
    _, net = run_engine(predictor, f, "network")
    engine, cam = run_engine(predictor, f, "camera")
    assert net.labels.shape == (96, 128), "network: the letterbox content of a 128x128 input"
    assert cam.labels.shape == cam.confidence.shape == CAMERA_HW and cam.background.shape == (*CAMERA_HW, 3)
    np.testing.assert_array_equal(cam.K, f.K)
    # nearest, pixel centres mapped: camera pixel (v, u) takes network pixel floor((v + 0.5) * 96 / 240), ...
    rows = np.floor((np.arange(240) + 0.5) * 96 / 240).astype(int)
    cols = np.floor((np.arange(320) + 0.5) * 128 / 320).astype(int)
    np.testing.assert_array_equal(cam.labels, net.labels[rows][:, cols])
    np.testing.assert_array_equal(cam.confidence, net.confidence[rows][:, cols])
    msgs = output_messages(cam, ["mask", "confidence", "camera_info", "overlay"], engine.palette, overlay_alpha=0.0)
    for name in ("mask", "confidence", "camera_info", "overlay"):
        assert (msgs[name].height, msgs[name].width) == CAMERA_HW, name
    np.testing.assert_allclose(np.reshape(msgs["camera_info"].k, (3, 3)), f.K)
    overlay = np.frombuffer(bytes(msgs["overlay"].data), np.uint8).reshape(*CAMERA_HW, 3)
    np.testing.assert_array_equal(overlay, f.rgb)  # alpha 0: the camera's own image, not an upscaled one


@pytest.mark.parametrize("resolution", ["network", "camera"])
def test_labeled_points_carry_the_mask_at_each_points_own_projection(predictor, world_frame, resolution):
    f = world_frame
    engine, result = run_engine(predictor, f, resolution)
    cloud = output_messages(result, ["labeled_points"], engine.palette)["labeled_points"]
    assert cloud.header.frame_id == "lidar" and cloud.header.stamp.sec == 5 and cloud.width == len(f.lidar)
    dtype = np.dtype({"names": [fl.name for fl in cloud.fields], "offsets": [fl.offset for fl in cloud.fields],
                      "formats": [{7: "<f4", 2: "u1"}[fl.datatype] for fl in cloud.fields],
                      "itemsize": cloud.point_step})
    points = np.frombuffer(bytes(cloud.data), dtype)
    np.testing.assert_array_equal(np.stack([points[n] for n in ("x", "y", "z", "intensity")], 1), f.lidar)
    # the projection, recomputed here from K and the extrinsic
    K, T, (h, w) = result.K, f.geometry.T_cam_lidar, result.labels.shape
    cam = f.lidar[:, :3].astype(np.float64) @ T[:3, :3].T + T[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.rint(K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 1] * cam[:, 1] / cam[:, 2] + K[0, 2])
        v = np.rint(K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2])
        inside = (cam[:, 2] > 0.1) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    assert inside.sum() > 100 and (~inside).sum() > 100, "the rig's LiDAR sees around the camera"
    ui, vi = u[inside].astype(int), v[inside].astype(int)
    np.testing.assert_array_equal(points["label"][inside], result.labels[vi, ui])
    np.testing.assert_array_equal(points["confidence"][inside], result.confidence[vi, ui])
    assert (points["label"][~inside] == NO_DATA).all() and (points["confidence"][~inside] == 0).all()


def test_no_labeled_points_without_lidar_or_without_calibration(predictor, world_frame):
    engine, result = run_engine(predictor, world_frame, "network")
    del result.frame.data["lidar"]
    assert output_messages(result, ["labeled_points"], engine.palette) == {}


def test_point_cloud_layout_round_trips():
    points = np.array([[1, 2, 3, 0.5], [4, 5, 6, 0.25]], np.float32)
    msg = xyzi_to_pointcloud2(points, frame_id="lidar")
    assert msg.point_step == 16 and [f.offset for f in msg.fields] == [0, 4, 8, 12] and msg.is_dense
    np.testing.assert_array_equal(pointcloud2_to_xyzi(msg), points)
