"""The one place a Result becomes ROS messages: the live node's publishers and `charm-bag-eval
--write-predictions` both build them here, so a recorded prediction is what the node would publish.

Every output carries the header (stamp, frame_id) of the frame's reference sensor, never now();
~/labeled_points, the LiDAR cloud itself, keeps the cloud's own header.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Protocol

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import String

from charm_core.classes import colorize
from charm_core.encoders import project_to_pixels
from charm_core.visualize import confidence_to_mono8, overlay
from charm_ros.msgs.camera_info import k_to_camera_info
from charm_ros.msgs.images import numpy_to_image
from charm_ros.msgs.pointclouds import records_to_pointcloud2

# Output name -> ROS message type (the node's ~/<name> topics, each with an outputs.<name> switch).
OUTPUT_TYPES = {"mask": Image, "color_mask": Image, "overlay": Image, "confidence": Image,
                "camera_info": CameraInfo, "subset": String, "labeled_points": PointCloud2}
NO_DATA = 255


class Segmentation(Protocol):
    """What the outputs are built from (the engine's Result): messages know nothing of the engine."""

    frame: Any                # .reference sensor and .data {sensor: sample with .header and .array}
    subset: tuple[str, ...]   # in the model's order
    labels: np.ndarray        # hxw uint8 class ids, NO_DATA where none
    confidence: np.ndarray    # hxw float32
    background: np.ndarray    # hxwx3 uint8
    K: np.ndarray | None      # intrinsics of the mask image
    T_cam_lidar: np.ndarray   # 4x4


class Report(Protocol):
    """One /diagnostics status (the health model's StatusReport)."""

    name: str                 # '<node>: <report>'
    level: int
    message: str
    values: dict[str, str]
LABELED_POINT = np.dtype([("x", np.float32), ("y", np.float32), ("z", np.float32), ("intensity", np.float32),
                          ("confidence", np.float32), ("label", np.uint8)], align=True)  # point_step 24


def type_name(msg_type: type) -> str:
    """'sensor_msgs/msg/Image' for sensor_msgs.msg.Image: how rosbag2 and the graph name a type."""
    return f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"


def output_messages(result: Segmentation, wanted: Iterable[str], palette: np.ndarray,
                    overlay_alpha: float = 0.5) -> dict[str, Any]:
    """{output name: message} for the outputs in `wanted` (only those are computed); ~/camera_info and
    ~/labeled_points are left out while no CameraInfo gives the mask's intrinsics, ~/labeled_points
    also for a frame without LiDAR."""
    header = result.frame.data[result.frame.reference].header
    build: dict[str, Callable[[], Any]] = {
        "mask": lambda: numpy_to_image(result.labels, "mono8", header),
        "color_mask": lambda: numpy_to_image(colorize(result.labels, palette), "rgb8", header),
        "overlay": lambda: numpy_to_image(overlay(result.background, result.labels, overlay_alpha, palette),
                                          "rgb8", header),
        "confidence": lambda: numpy_to_image(confidence_to_mono8(result.confidence), "mono8", header),
        "camera_info": lambda: None if result.K is None else k_to_camera_info(result.K, result.labels.shape[:2],
                                                                              header),
        "subset": lambda: String(data="+".join(result.subset)),  # not subset_name: it is in the model's order
        "labeled_points": lambda: labeled_points_message(result),
    }
    out = {name: build[name]() for name in wanted}
    return {name: msg for name, msg in out.items() if msg is not None}


def labels_message(class_names: Iterable[str], palette: np.ndarray) -> String:
    """~/labels (latched): class names, the palette in use and the no-data value, as JSON."""
    return String(data=json.dumps({"classes": list(class_names), "palette": np.asarray(palette).tolist(),
                                   "no_data": NO_DATA}))


def point_labels(result: Segmentation) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(Nx4 cloud, label per point, confidence per point) of the frame's LiDAR read off the mask at each
    point's pixel (the encoder's projection, with the mask's K); NO_DATA and 0 for points outside
    the image or behind the camera. None without LiDAR in the frame or without the mask's K."""
    sample = result.frame.data.get("lidar")
    if sample is None or result.K is None:
        return None
    points = sample.array
    hit = project_to_pixels(points, result.K, result.labels.shape[:2], result.T_cam_lidar)
    labels = np.full(len(points), NO_DATA, np.uint8)
    confidence = np.zeros(len(points), np.float32)
    labels[hit.inside] = result.labels[hit.row, hit.col]
    confidence[hit.inside] = result.confidence[hit.row, hit.col]
    return points, labels, confidence


def labeled_points_message(result: Segmentation) -> Any:
    """~/labeled_points: x, y, z, intensity, confidence (float32) and label (uint8) per point, in the
    cloud's own frame and stamp; None where `point_labels` has nothing."""
    labeled = point_labels(result)
    if labeled is None:
        return None
    points, labels, confidence = labeled
    cloud = np.zeros(len(points), LABELED_POINT)  # zeros: no stray bytes in the padding
    for column, name in enumerate(("x", "y", "z", "intensity")):
        cloud[name] = points[:, column] if column < points.shape[1] else 0.0
    cloud["confidence"], cloud["label"] = confidence, labels
    return records_to_pointcloud2(cloud, result.frame.data["lidar"].header)


def diagnostics_message(reports: Iterable[Report], node_name: str, stamp: Any) -> DiagnosticArray:
    """/diagnostics: one DiagnosticStatus per report, named '<node>: <report>' (e.g. '/charm: pipeline')."""
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = [DiagnosticStatus(level=bytes([r.level]), name=f"{node_name}: {r.name.split(': ')[1]}",
                                   message=r.message, hardware_id="charm",
                                   values=[KeyValue(key=k, value=v) for k, v in r.values.items()])
                  for r in reports]
    return msg
