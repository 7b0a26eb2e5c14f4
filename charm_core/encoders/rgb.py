"""Modality images -> float network tensors, exactly as DELIVER's reference pipeline does it.

RGB (kind color): /255 then ImageNet mean/std. Every other uint8 modality image (hha, lidar, event):
/255 only. Intensity and angle modalities arrive as float32 images already in [0, 1]
(charm_core.encoders.intensity / angle) and pass unchanged.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from charm_core.modalities import BUILTIN, ModalitySpec

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
    """HxWx3 uint8 RGB (or float32 in [0, 1], e.g. from a 16-bit file) -> float32 3xHxW (channels-last
    view), ImageNet-normalized."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.float32:
        rgb = _require_uint8(rgb, "rgb image")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb image must be HxWx3, got shape {rgb.shape}")
    x = _unit_hwc(rgb) if rgb.dtype == np.uint8 else rgb.astype(np.float32, order="C", copy=True)
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


def encode_float(img: np.ndarray) -> np.ndarray:
    """HxWx3 float32 in [0, 1] (an intensity / angle encoding) -> 3xHxW channels-last view."""
    x = np.asarray(img)
    if x.dtype != np.float32 or x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"expected a float32 HxWx3 image in [0, 1], got {x.dtype} {x.shape}")
    return _channels_first(np.ascontiguousarray(x))


def frame_to_network(images: dict[str, np.ndarray],
                     specs: Mapping[str, ModalitySpec] | None = None) -> dict[str, np.ndarray]:
    """{modality: HxWx3 image} -> float32 3xHxW per modality (channels-last views).

    The kind of each name comes from `specs` (name -> spec, a model's modalities; default: the
    built-in ones): color gets ImageNet normalisation, uint8 images of other kinds /255, float32
    images (intensity, angle) pass as they are."""
    table = BUILTIN if specs is None else specs
    unknown = sorted(set(images) - set(table))
    if unknown:  # an error, not a silently ignored input
        raise ValueError(f"unknown modalities {unknown}; expected a subset of {list(table)}")
    out = {}
    for name, img in images.items():
        if table[name].kind == "color":
            out[name] = encode_rgb(img)
        elif np.asarray(img).dtype == np.float32:
            out[name] = encode_float(img)
        else:
            out[name] = encode_unit(img)
    return out
