"""uint8 images -> float network tensors, exactly as DELIVER's reference pipeline does it.

RGB: /255 then ImageNet mean/std. Every other modality image (hha, lidar, event): /255 only.
"""
from __future__ import annotations

import numpy as np

from charm_core.modalities import canonical

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _require_uint8(img: np.ndarray, what: str) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8, got {img.dtype}")
    return img


def _unit_hwc(img: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 -> new contiguous float32 HxWx3 / 255 (worked in place: the node runs this per frame)."""
    x = img.astype(np.float32, order="C")  # C order even for a strided input: callers reshape it in place
    x /= np.float32(255.0)
    return x


def _channels_first(x: np.ndarray) -> np.ndarray:
    """HxWx3 -> 3xHxW view of the same memory: channels-last strides, which is the layout the CPU
    model runs in, so the predictor takes it without a copy (np.ascontiguousarray gives planar)."""
    return x.transpose(2, 0, 1)


def encode_rgb(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> float32 3xHxW (channels-last view), ImageNet-normalized."""
    rgb = _require_uint8(rgb, "rgb image")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb image must be HxWx3, got shape {rgb.shape}")
    x = _unit_hwc(rgb)
    rows = x.reshape(x.shape[0], -1)  # HxW*3: per-channel constants tiled along a long contiguous row
    rows -= np.tile(IMAGENET_MEAN, x.shape[1])
    rows /= np.tile(IMAGENET_STD, x.shape[1])
    return _channels_first(x)


def encode_unit(img: np.ndarray) -> np.ndarray:
    """HxW / HxWx1 / HxWx3 / HxWx4 uint8 -> float32 3xHxW (channels-last view) in [0, 1] (mono repeated,
    alpha dropped)."""
    img = _require_uint8(img, "modality image")
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f"modality image must be HxW, HxWx1, HxWx3 or HxWx4, got shape {img.shape}")
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return _channels_first(_unit_hwc(img[..., :3]))


def frame_to_network(images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{"rgb": HxWx3, "depth"/"event"/"lidar": HxWx3 uint8} -> float32 3xHxW per modality (channels-last views)."""
    canonical(images)  # unknown names are an error, not a silently ignored input
    return {name: encode_rgb(img) if name == "rgb" else encode_unit(img) for name, img in images.items()}
