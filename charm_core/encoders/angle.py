"""Angle images (AoLP) -> [0, 1] network images: channels [(sin + 1) / 2, (cos + 1) / 2, (sin + 1) / 2].

MCubeS feeds AoLP as [sin, cos, sin]; the same layout mapped affinely to [0, 1], the range of every
non-RGB input here. Sine and cosine instead of the angle itself: no jump where the angle wraps.
Non-finite angles (no measurement) become 0 in every channel.
"""
from __future__ import annotations

import numpy as np


def encode_sincos(sin: np.ndarray, cos: np.ndarray) -> np.ndarray:
    """HxW sine and cosine of the angle -> float32 HxWx3 in [0, 1]."""
    s, c = np.asarray(sin, dtype=np.float32), np.asarray(cos, dtype=np.float32)
    if s.ndim != 2 or s.shape != c.shape:
        raise ValueError(f"sin and cos must be HxW arrays of one shape, got {s.shape} and {c.shape}")
    valid = np.isfinite(s) & np.isfinite(c)
    s = np.where(valid, (np.clip(s, -1.0, 1.0) + 1.0) * 0.5, 0.0)
    c = np.where(valid, (np.clip(c, -1.0, 1.0) + 1.0) * 0.5, 0.0)
    return np.stack([s, c, s], axis=-1).astype(np.float32)


def encode_angle(angle: np.ndarray) -> np.ndarray:
    """HxW angle in radians -> float32 HxWx3 in [0, 1] (see module docstring)."""
    a = np.asarray(angle, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"angle must be an HxW array in radians, got shape {a.shape}")
    with np.errstate(invalid="ignore"):
        return encode_sincos(np.sin(a), np.cos(a))
