"""The node's perception logic without ROS: synchronized sensor samples in, segmentation results out.

The live node and the rosbag evaluator both drive this class, so identical inputs give identical
masks on- and offline. Nothing here imports rclpy.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from charm_core.encoders import (FrameEncoder, Letterbox, SensorGeometry, frame_to_network, scale_intrinsics,
                                 to_physical)
from charm_core.inference import Predictor
from charm_core.modalities import ModalitySpec, specs_by_name
from charm_core.visualize import confidence_to_mono8
from charm_ros.msgs import camera_info, fields, images, pointclouds
from charm_ros.runtime.sync import Frame

# Sensors whose encoding needs camera intrinsics (back-projection / projection).
NEEDS_CAMERA = ("depth", "lidar")
DEFAULT_INPUT_SIZE = (256, 256)  # for a checkpoint that does not record its training size


@dataclass
class SensorSample:
    """One converted message: the array the encoders take, plus the header to copy onto outputs."""

    array: np.ndarray   # rgb/event: HxWx3 uint8; depth: HxW float32 metres (0 = invalid); lidar: Nx4 float32;
                        # intensity / angle cameras: HxW float32 physical units
    stamp: float        # header stamp, seconds
    frame_id: str
    header: Any = None  # the original message header (copied verbatim onto outputs by the node)


@dataclass(frozen=True)
class CameraModel:
    K: np.ndarray
    hw: tuple[int, int]


@dataclass
class PipelineConfig:
    input_size: tuple[int, int] | None = (256, 256)  # None: the checkpoint's (see Pipeline.for_node)
    geometry: SensorGeometry = field(default_factory=SensorGeometry)
    min_confidence: float = 0.0  # pixels below it become 255 (no data) on ~/mask
    lidar_intensity_field: str = "auto"  # see the lidar.intensity_field parameter
    lidar_intensity_scale: float = 0.0   # see the lidar.intensity_scale parameter
    output_resolution: str = "network"   # network | camera: the size of labels, confidence and K in Results
    # intensity / angle cameras: their spec with the configured <name>.scale / <name>.offset
    units: dict[str, ModalitySpec] = field(default_factory=dict)


@dataclass
class Result:
    frame: Frame
    subset: tuple[str, ...]       # the modalities actually fed to the model (the model's order)
    labels: np.ndarray            # hxw uint8 class ids at mask resolution (unpadded), 255 = no data
    confidence: np.ndarray        # hxw float32 max softmax probability
    background: np.ndarray        # hxwx3 uint8 image for the overlay (RGB when present)
    K: np.ndarray | None          # intrinsics of the mask image (~/camera_info); None without CameraInfo
    T_cam_lidar: np.ndarray       # 4x4 LiDAR -> camera optical frame the frame was encoded with
    skipped: dict[str, str]       # modality -> why it was in the frame but not used
    encode_ms: float
    forward_ms: float


@dataclass
class Encoded:
    """A frame as the model takes it, before normalisation (what a training set stores)."""

    images: dict[str, np.ndarray]  # modality -> network-size HxWx3 encoding (uint8; float32 for intensity/angle)
    box: Letterbox                 # where the camera image sits in the network image
    K: np.ndarray | None           # the camera's intrinsics (None without CameraInfo)
    skipped: dict[str, str]        # modality -> why it was in the frame but not encoded
    encode_ms: float


class FrameSkipped(Exception):
    """No modality of a synchronized frame could be encoded (e.g. LiDAR only and no CameraInfo yet)."""


class Pipeline:
    """Encodes a synchronized Frame with the shared charm_core encoders and runs the predictor on it."""

    def __init__(self, predictor: Predictor, config: PipelineConfig) -> None:
        self.predictor = predictor
        self.config = config
        self.encoder = FrameEncoder(tuple(config.input_size), config.geometry)
        self.specs = specs_by_name(predictor.info.config.specs)  # the model's modalities, in its order
        self.cameras: dict[str, CameraModel] = {}
        self.image_hw: dict[str, tuple[int, int]] = {}  # size of each camera's last image, usable or not
        self.wait_for_graphs = False  # a graph backend's subset not built yet: build it first (offline) or run torch

    @classmethod
    def for_node(cls, predictor: Predictor, config: PipelineConfig, enabled: tuple[str, ...]) -> Pipeline:
        """The pipeline the node's parameters describe (the live node and the bag evaluator both use it);
        input size None means the checkpoint's training size. Raises ValueError, at start rather than
        on every frame, when a sensor is enabled that the checkpoint was not trained with."""
        unknown = [m for m in enabled if m not in predictor.modalities]
        if unknown:
            raise ValueError(f"the checkpoint takes {'+'.join(predictor.modalities)} only, but "
                             f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} enabled: set "
                             f"{', '.join(f'{m}.enabled' for m in unknown)} to false, or use a checkpoint trained "
                             "with them")
        size = config.input_size or tuple(predictor.info.provenance.get("input_size", DEFAULT_INPUT_SIZE))
        return cls(predictor, replace(config, input_size=tuple(size)))

    def set_camera(self, modality: str, K: np.ndarray, hw: tuple[int, int]) -> None:
        """Latest CameraInfo of the rgb, depth or an intensity / angle camera."""
        if modality not in ("rgb", "depth", *self.config.units):
            raise ValueError(f"camera info is taken for rgb, depth and single-channel cameras, not {modality!r}")
        self.cameras[modality] = CameraModel(np.asarray(K, dtype=np.float64), (int(hw[0]), int(hw[1])))

    def accept_camera_info(self, modality: str, msg: Any) -> None:
        """A CameraInfo message (rclpy or rosbags); raises ConversionError if unusable, or if its size
        contradicts the camera's images: then the camera is dropped too (its images keep flowing
        without intrinsics, depth and LiDAR are left out with the reason) instead of every frame
        failing in the encoders."""
        K, hw = camera_info.camera_info_to_k(msg)
        images = self.image_hw.get(modality)
        if images is not None and images != hw:
            self.cameras.pop(modality, None)
            raise fields.ConversionError(f"CameraInfo is {hw[1]}x{hw[0]} but the {modality} images are "
                                              f"{images[1]}x{images[0]}: wrong camera_info topic, or another "
                                              "binning/ROI")
        self.set_camera(modality, K, hw)

    def accept(self, modality: str, msg: Any) -> SensorSample:
        """Convert and check one sensor message (rclpy or rosbags); raises ConversionError with the reason.

        The node's callbacks and the bag evaluator both come through here, so both reject the same
        messages: undecodable ones, empty clouds, depth without a valid pixel, images whose size
        contradicts their CameraInfo."""
        if modality == "lidar":
            array = self._lidar_points(msg)
            if len(array) == 0:
                raise fields.ConversionError("point cloud has no finite points")
        elif modality == "depth":
            array = images.image_to_depth_m(msg)
            if not np.any(array > 0):
                raise fields.ConversionError("depth image has no valid pixel (all 0/NaN/inf)")
        elif modality in ("rgb", "event"):
            array = images.image_to_rgb(msg)
        elif modality in self.config.units:
            array = to_physical(images.image_to_single_channel(msg), self.config.units[modality])
        else:
            raise ValueError(f"unknown modality {modality!r}")
        stamp = fields.stamp_to_sec(msg.header.stamp)
        if stamp <= 0:
            raise fields.ConversionError(f"header stamp is {stamp:.9g} s: unset or before 1970; the driver must "
                                              "stamp its messages (outputs copy the stamp)")
        if modality in ("rgb", "depth", *self.config.units):
            self.image_hw[modality] = array.shape[:2]
        camera = self.cameras.get(modality)
        if camera is not None and array.shape[:2] != camera.hw:
            raise fields.ConversionError(f"{modality} image is {array.shape[1]}x{array.shape[0]} but its "
                                              f"CameraInfo says {camera.hw[1]}x{camera.hw[0]}")
        return SensorSample(array=array, stamp=stamp, frame_id=msg.header.frame_id, header=msg.header)

    def _lidar_points(self, msg: Any) -> np.ndarray:
        """Nx4 points with the configured intensity field, scaled to 0..1 if a scale is configured."""
        config = self.config  # one snapshot: the node swaps in a new one when parameters change
        field = config.lidar_intensity_field
        if field not in ("auto", ""):
            names = [str(f.name) for f in msg.fields]
            if field not in names:
                raise fields.ConversionError(
                    f"point cloud has no field {field!r} (lidar.intensity_field); it has {names}: set "
                    "lidar.intensity_field to one of them, 'auto', or '' for no intensity")
        points = pointclouds.pointcloud2_to_xyzi(msg, intensity_field={"auto": "intensity", "": None}.get(field, field))
        if config.lidar_intensity_scale > 0:
            np.clip(points[:, 3] / config.lidar_intensity_scale, 0.0, 1.0, out=points[:, 3])
        return points

    def reference_camera(self, frame: Frame) -> CameraModel | None:
        """The camera that defines the network image: the RGB camera, else the depth camera, else the
        first calibrated intensity / angle camera (in the model's order), else None.

        With RGB in the frame but only another camera calibrated (an RGB CameraInfo that is missing
        or rejected, e.g. all-zero K), the RGB view stays the network image: its K is the other
        camera's scaled to the RGB size, as registered cameras (same optical centre) are assumed."""
        other = self.cameras.get("depth") or next(
            (self.cameras[m] for m in self.specs if m in self.config.units and m in self.cameras), None)
        if "rgb" in self.cameras or other is None or "rgb" not in frame.data:
            return self.cameras.get("rgb") or other
        rgb_hw = frame.data["rgb"].array.shape[:2]
        return CameraModel(scale_intrinsics(other.K, other.hw, rgb_hw), (int(rgb_hw[0]), int(rgb_hw[1])))

    def encode(self, frame: Frame) -> Encoded:
        """The frame's network images, built by the encoders the training data is built with; raises
        FrameSkipped when nothing in it can be encoded (e.g. LiDAR alone and no CameraInfo yet)."""
        start = time.perf_counter()
        data: dict[str, SensorSample] = frame.data
        camera = self.reference_camera(frame)
        skipped: dict[str, str] = {}
        if camera is None:
            for name in NEEDS_CAMERA:
                if name in data:
                    skipped[name] = "no CameraInfo received yet"
            images_hw = [data[m].array.shape[:2] for m in ("rgb", "event", *self.config.units) if m in data]
            if not images_hw:
                raise FrameSkipped("no CameraInfo received yet: depth/LiDAR cannot be encoded")
            camera_hw, K = images_hw[0], _nominal_k(images_hw[0])
        else:
            camera_hw, K = camera.hw, camera.K
            rgb_hw = data["rgb"].array.shape[:2] if "rgb" in data else camera_hw
            if rgb_hw != camera_hw:  # taken while its camera was unknown or being replaced
                skipped["rgb"] = (f"rgb image is {rgb_hw[1]}x{rgb_hw[0]} but the camera it is encoded in is "
                                  f"{camera_hw[1]}x{camera_hw[0]}")
        usable = {m: s.array for m, s in data.items() if m not in skipped}
        if not usable:
            raise FrameSkipped("; ".join(f"{m}: {why}" for m, why in skipped.items()))
        depth_camera = self.cameras.get("depth")
        units = {m: (self.config.units[m], a) for m, a in usable.items() if m in self.config.units}
        images = self.encoder.encode(
            K=K, image_hw=camera_hw,
            rgb=usable.get("rgb"), event=usable.get("event"), lidar=usable.get("lidar"),
            depth=usable.get("depth"),
            depth_K=None if depth_camera is None else depth_camera.K,
            cameras=units, camera_K={m: self.cameras[m].K for m in units if m in self.cameras},
        )
        return Encoded(images=images, box=self.encoder.letterbox(camera_hw), K=None if camera is None else K,
                       skipped=skipped, encode_ms=(time.perf_counter() - start) * 1e3)

    def process(self, frame: Frame) -> Result:
        """Encode the frame and run the model on exactly the modalities it has."""
        return self.predict(frame, self.encode(frame))

    def predict(self, frame: Frame, encoded: Encoded) -> Result:
        """The model on an encoded frame; the mask cropped out of the letterbox."""
        images, box = encoded.images, encoded.box
        if self.wait_for_graphs:  # offline: every frame on the configured backend, never torch meanwhile
            present = tuple(m for m in self.predictor.modalities if m in images)
            if not self.predictor.ready(present, self.config.input_size):
                self.predictor.prepare([present], self.config.input_size)
        labels, confidence = self.predictor.predict(frame_to_network(images, self.specs))
        labels = box.crop(labels)
        confidence = box.crop(confidence)
        min_confidence = self.config.min_confidence
        if min_confidence > 0:
            labels = np.where(confidence < min_confidence, np.uint8(255), labels)
        subset = tuple(m for m in self.specs if m in images)
        background = box.crop(images["rgb"] if "rgb" in images else images[subset[0]])
        if background.dtype != np.uint8:  # an intensity / angle encoding in [0, 1]
            background = confidence_to_mono8(background)
        mask_K = None if encoded.K is None else box.intrinsics(encoded.K)
        if self.config.output_resolution == "camera":
            # camera pixels: labels and confidence nearest (each pixel keeps its id's confidence); the
            # overlay over the camera's own RGB, which is camera_hw whenever RGB is in the frame
            labels, confidence = box.to_source(labels), box.to_source(confidence)
            background = frame.data["rgb"].array if "rgb" in images else box.to_source(background, nearest=False)
            mask_K = encoded.K
        return Result(frame=frame, subset=subset,
                      labels=np.ascontiguousarray(labels), confidence=np.ascontiguousarray(confidence),
                      background=np.ascontiguousarray(background),
                      K=mask_K, T_cam_lidar=self.config.geometry.T_cam_lidar, skipped=encoded.skipped,
                      encode_ms=encoded.encode_ms, forward_ms=self.predictor.last_forward_ms)


def _nominal_k(hw: tuple[int, int]) -> np.ndarray:
    """Intrinsics used only to letterbox RGB/event images while no CameraInfo exists (sizes matter, not K)."""
    h, w = hw
    return np.array([[w, 0, (w - 1) / 2], [0, w, (h - 1) / 2], [0, 0, 1]], dtype=np.float64)
