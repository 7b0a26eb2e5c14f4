"""Single-channel cameras (thermal/LWIR, NIR, DoLP) -> [0, 1] network images, per the modality's spec.

Two steps, so that a driver's own units can enter between them: `to_physical` turns stored values
(a file's 8/16-bit counts, a centi-Kelvin mono16 image) into physical units with the spec's
scale/offset; `encode_intensity` maps physical values to [0, 1] with the spec's fixed range (a
thermal model sees the same Kelvin as the same input, day or night) or, with percentiles, with that
robust range of each image. Non-finite values (no measurement) become 0.
"""
from __future__ import annotations

import numpy as np

from charm_core.modalities import ModalitySpec


def to_physical(stored: np.ndarray, spec: ModalitySpec) -> np.ndarray:
    """Stored values -> float32 physical units: x * scale + offset; scale None = integer full scale is 1."""
    x = np.asarray(stored)
    if x.dtype.kind in "ui":
        scale = spec.scale if spec.scale is not None else 1.0 / np.iinfo(x.dtype).max
    elif x.dtype.kind == "f":
        scale = spec.scale if spec.scale is not None else 1.0
    else:
        raise ValueError(f"{spec.name}: expected integer or float values, got {x.dtype}")
    return (x.astype(np.float32) * np.float32(scale) + np.float32(spec.offset)).astype(np.float32, copy=False)


def encode_intensity(values: np.ndarray, spec: ModalitySpec) -> np.ndarray:
    """HxW physical values (HxWx1 accepted) -> float32 HxWx3 in [0, 1] (the value in every channel)."""
    if spec.kind != "intensity":
        raise ValueError(f"{spec.name} is a {spec.kind} modality, not intensity")
    x = np.asarray(values, dtype=np.float32)
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[..., 0]
    if x.ndim != 2:
        raise ValueError(f"{spec.name}: expected an HxW single-channel image, got shape {x.shape}")
    finite = np.isfinite(x)
    if spec.range is not None:
        lo, hi = spec.range
    elif finite.any():
        lo, hi = (float(v) for v in np.percentile(x[finite], spec.percentiles))
    else:
        lo, hi = 0.0, 1.0
    span = hi - lo if hi > lo else 1.0
    unit = np.clip((np.where(finite, x, lo) - np.float32(lo)) / np.float32(span), 0.0, 1.0).astype(np.float32)
    if hi <= lo:  # a flat image under a robust range carries no contrast
        unit[:] = 0.0
    return np.repeat(unit[..., None], 3, axis=2)
