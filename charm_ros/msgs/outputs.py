"""The one place a Result becomes ROS messages: the live node's publishers and `charm-bag-eval
--write-predictions` both build them here, so a recorded prediction is what the node would publish.

Every output carries the header (stamp, frame_id) of the frame's reference sensor, never now().
"""
from __future__ import annotations

import json
from typing import Any, Callable, Iterable

import numpy as np
from std_msgs.msg import String

from charm_core.classes import colorize
from charm_core.visualize import confidence_to_mono8, overlay
from charm_ros.msgs.conversions import k_to_camera_info, numpy_to_image
from charm_ros.runtime.pipeline import Result

# Output name -> ROS message type name (the node's ~/<name> topics).
OUTPUT_TYPES = {"mask": "Image", "color_mask": "Image", "overlay": "Image", "confidence": "Image",
                "camera_info": "CameraInfo", "subset": "String"}
NO_DATA = 255


def output_messages(result: Result, wanted: Iterable[str], palette: np.ndarray,
                    overlay_alpha: float = 0.5) -> dict[str, Any]:
    """{output name: message} for the outputs in `wanted` (only those are computed); ~/camera_info is
    left out while no CameraInfo gives the mask's intrinsics."""
    header = result.frame.data[result.frame.reference].header
    build: dict[str, Callable[[], Any]] = {
        "mask": lambda: numpy_to_image(result.labels, "mono8", header),
        "color_mask": lambda: numpy_to_image(colorize(result.labels, palette), "rgb8", header),
        "overlay": lambda: numpy_to_image(overlay(result.background, result.labels, overlay_alpha, palette),
                                          "rgb8", header),
        "confidence": lambda: numpy_to_image(confidence_to_mono8(result.confidence), "mono8", header),
        "camera_info": lambda: None if result.K is None else k_to_camera_info(result.K, result.labels.shape[:2],
                                                                              header),
        "subset": lambda: String(data="+".join(result.subset)),  # subset_name: it is in the model's order
    }
    out = {name: build[name]() for name in wanted}
    return {name: msg for name, msg in out.items() if msg is not None}


def labels_message(class_names: Iterable[str], palette: np.ndarray) -> String:
    """~/labels (latched): class names, the palette in use and the no-data value, as JSON."""
    return String(data=json.dumps({"classes": list(class_names), "palette": np.asarray(palette).tolist(),
                                   "no_data": NO_DATA}))
