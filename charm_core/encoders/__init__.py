"""Sensor encoders: raw sensor data -> the 3-channel network inputs of every modality (DESIGN.md §4).

One implementation shared by the synthetic dataset writer, the trainer, the ROS node and the bag
evaluator, so that training and deployment see identically encoded inputs.
"""
from charm_core.encoders.angle import encode_angle, encode_sincos
from charm_core.encoders.depth import depth_to_hha, valid_depth
from charm_core.encoders.event import events_to_frame
from charm_core.encoders.frame import FrameEncoder
from charm_core.encoders.geometry import Letterbox, SensorGeometry, project_points, scale_intrinsics
from charm_core.encoders.intensity import encode_intensity, to_physical
from charm_core.encoders.lidar import lidar_to_raster, project_to_pixels
from charm_core.encoders.rgb import IMAGENET_MEAN, IMAGENET_STD, encode_float, encode_rgb, encode_unit, frame_to_network

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "FrameEncoder", "Letterbox", "SensorGeometry", "depth_to_hha",
    "encode_angle", "encode_float", "encode_intensity", "encode_rgb", "encode_sincos", "encode_unit",
    "events_to_frame", "frame_to_network", "lidar_to_raster", "project_points", "project_to_pixels", "scale_intrinsics",
    "to_physical", "valid_depth",
]
