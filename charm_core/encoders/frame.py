"""Raw sensor data -> network-size uint8 modality images: the one path used by the dataset writer,
the trainer's data, the ROS node and the bag evaluator, so train-time and run-time inputs match.

The reference camera (K, image_hw) defines the network frame through a Letterbox. Depth and event
images are assumed registered to the reference camera (same optical centre); they may differ in
resolution and intrinsics and are resampled (nearest: no invented depths or half events) through
the ray of every network pixel; depth is turned into HHA after that, in the network frame. LiDAR is
projected directly at network resolution. Single-channel cameras (intensity: physical units, angle:
radians) are registered like events and encoded after resampling, in the network frame.
"""
from __future__ import annotations

import functools
from typing import Mapping

import cv2
import numpy as np

from charm_core.encoders.angle import encode_angle
from charm_core.encoders.depth import depth_to_hha
from charm_core.encoders.geometry import Letterbox, SensorGeometry, check_intrinsics, scale_intrinsics
from charm_core.encoders.intensity import encode_intensity
from charm_core.encoders.lidar import lidar_to_raster
from charm_core.modalities import ModalitySpec


def resample_registered(img: np.ndarray, src_K: np.ndarray, dst_K: np.ndarray, dst_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resample of an image seen with src_K into a camera with dst_K (same centre)."""
    map_x, map_y = _registration_maps(np.asarray(src_K, np.float64).tobytes(), np.asarray(dst_K, np.float64).tobytes(),
                                      (int(dst_hw[0]), int(dst_hw[1])))
    return cv2.remap(img, map_x, map_y, interpolation=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0)


@functools.lru_cache(maxsize=16)
def _registration_maps(src_K: bytes, dst_K: bytes, dst_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Source pixel of every destination pixel; cached because cameras rarely change between frames."""
    src, dst = np.frombuffer(src_K).reshape(3, 3), np.frombuffer(dst_K).reshape(3, 3)
    h, w = dst_hw
    fx, s, cx, fy, cy = dst[0, 0], dst[0, 1], dst[0, 2], dst[1, 1], dst[1, 2]
    yn = (np.arange(h, dtype=np.float64)[:, None] - cy) / fy
    xn = (np.arange(w, dtype=np.float64)[None, :] - cx - s * yn) / fx
    map_x = (src[0, 0] * xn + src[0, 1] * yn + src[0, 2]).astype(np.float32)
    map_y = np.ascontiguousarray(np.broadcast_to(src[1, 1] * yn + src[1, 2], (h, w)), dtype=np.float32)
    map_x.flags.writeable = map_y.flags.writeable = False
    return map_x, map_y


class FrameEncoder:
    """Encodes whatever modalities are given into the network frame of size `size_hw`."""

    def __init__(self, size_hw: tuple[int, int], geometry: SensorGeometry = SensorGeometry()) -> None:
        self.size_hw = (int(size_hw[0]), int(size_hw[1]))
        if min(self.size_hw) <= 0:
            raise ValueError(f"size_hw must be positive (height, width), got {size_hw}")
        self.geometry = geometry

    def letterbox(self, image_hw: tuple[int, int]) -> Letterbox:
        return Letterbox.fit(tuple(image_hw), self.size_hw)

    def encode(self, *, K: np.ndarray, image_hw: tuple[int, int], rgb: np.ndarray | None = None,
               depth: np.ndarray | None = None, depth_K: np.ndarray | None = None,
               event: np.ndarray | None = None, lidar: np.ndarray | None = None,
               cameras: Mapping[str, tuple[ModalitySpec, np.ndarray]] | None = None,
               camera_K: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Returns {"rgb", "depth" (HHA), "event", "lidar"} uint8 HxWx3 for the modalities given, and for
        each of `cameras` ({name: (spec, HxW image)}, intensity in physical units or angle in radians)
        its float32 HxWx3 encoding in [0, 1]. `camera_K` gives a camera's own intrinsics (a calibrated
        camera of another resolution); without, the reference K scaled to its image size."""
        K = check_intrinsics(K)
        box = self.letterbox(image_hw)
        net_K = box.intrinsics(K)
        out: dict[str, np.ndarray] = {}
        if rgb is not None:
            rgb = np.asarray(rgb)
            if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
                raise ValueError(f"rgb must be uint8 HxWx3, got {rgb.dtype} {rgb.shape}")
            out["rgb"] = box.image(rgb)
        if depth is not None:
            depth = np.asarray(depth, dtype=np.float32)
            if depth.ndim != 2:
                raise ValueError(f"depth must be HxW metres, got shape {depth.shape}")
            dK = scale_intrinsics(K, box.src_hw, depth.shape) if depth_K is None else check_intrinsics(depth_K)
            # HHA is computed in the network frame, on the resampled depth: its cost does not grow with
            # the camera's resolution, and its surface normals span the same network pixels whatever
            # the camera, as in training data rendered at network size (where both orders agree).
            z = resample_registered(depth, dK, net_K, box.content_hw)
            out["depth"] = self._pad(depth_to_hha(z, net_K, self.geometry), box)
        if event is not None:
            event = np.asarray(event)
            if event.dtype != np.uint8 or event.ndim not in (2, 3):
                raise ValueError(f"event must be a uint8 HxWx3 (or HxW) event frame, got {event.dtype} {event.shape}")
            if event.ndim == 2:
                event = np.repeat(event[..., None], 3, axis=2)
            eK = scale_intrinsics(K, box.src_hw, event.shape[:2])
            out["event"] = self._into_network(event[..., :3], eK, net_K, box)
        if lidar is not None:
            raster = lidar_to_raster(lidar, net_K, box.content_hw, self.geometry)
            out["lidar"] = self._pad(raster, box)
        for name, (spec, values) in (cameras or {}).items():
            values = np.asarray(values, dtype=np.float32)
            if values.ndim != 2:
                raise ValueError(f"{name} must be an HxW single-channel image, got shape {values.shape}")
            own_K = (camera_K or {}).get(name)
            cK = scale_intrinsics(K, box.src_hw, values.shape) if own_K is None else check_intrinsics(own_K)
            z = resample_registered(values, cK, net_K, box.content_hw)
            if spec.kind == "intensity":
                encoded = encode_intensity(z, spec)
            elif spec.kind == "angle":
                encoded = encode_angle(z)
            else:
                raise ValueError(f"{name}: cameras take intensity or angle modalities, not {spec.kind}")
            out[name] = self._pad(encoded, box)
        return out

    def _into_network(self, img: np.ndarray, src_K: np.ndarray, net_K: np.ndarray, box: Letterbox) -> np.ndarray:
        return self._pad(resample_registered(img, src_K, net_K, box.content_hw), box)

    @staticmethod
    def _pad(content: np.ndarray, box: Letterbox) -> np.ndarray:
        out = np.zeros(box.dst_hw + content.shape[2:], dtype=content.dtype)
        out[: content.shape[0], : content.shape[1]] = content
        return out
