"""Metric depth -> HHA-like 3-channel image (the `hha/` PNGs and the node's depth input).

Channels (scalings in `codes`): 0 = log-inverse depth, 1 = height above the ground plane,
2 = angle between the surface normal and "up". Invalid depth (0, NaN, +/-inf, negative) becomes 0 in
all three channels, so "no measurement" can never be confused with "far away".

This runs on every depth frame in the node, so it works on separate HxW float32 planes (X, Y, Z)
rather than HxWx3 arrays: numpy and OpenCV stream contiguous planes several times faster, and the
angle is quantized to ~0.7 degree steps, far coarser than float32 rounding.
"""
from __future__ import annotations

import cv2
import numpy as np

from charm_core.encoders.codes import angle_code, depth_code, height_code
from charm_core.encoders.geometry import SensorGeometry, check_intrinsics

# Normals are averaged over this window: single-pixel differences of noisy depth are mostly noise.
NORMAL_WINDOW = 7
UNKNOWN_ANGLE_DEG = 90.0


def valid_depth(depth_m: np.ndarray) -> np.ndarray:
    """Boolean mask of usable depth pixels (finite and > 0)."""
    d = np.asarray(depth_m)
    with np.errstate(invalid="ignore"):
        return np.isfinite(d) & (d > 0)


def backproject(z: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HxW float32 depth (z along the optical axis, invalid = 0) -> camera-frame X, Y, Z planes."""
    h, w = z.shape
    fx, s, cx, fy, cy = K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]
    yn = ((np.arange(h, dtype=np.float64) - cy) / fy)[:, None]
    xn = (np.arange(w, dtype=np.float64)[None, :] - cx - s * yn) / fx
    return xn.astype(np.float32) * z, yn.astype(np.float32) * z, z


def _windowed_difference(c: np.ndarray, pair_ok: np.ndarray, axis: int) -> np.ndarray:
    """Central differences of plane `c` along `axis` (0 = down rows, 1 = along columns), zero where
    `pair_ok` (both neighbours valid, float32 0/1 of the interior shape) is 0, summed over
    NORMAL_WINDOW^2 pixels."""
    d = np.zeros_like(c)
    if axis == 1:
        d[:, 1:-1] = (c[:, 2:] - c[:, :-2]) * pair_ok
    else:
        d[1:-1] = (c[2:] - c[:-2]) * pair_ok
    return cv2.boxFilter(d, -1, (NORMAL_WINDOW, NORMAL_WINDOW), normalize=False, borderType=cv2.BORDER_CONSTANT)


def normal_cos_up(X: np.ndarray, Y: np.ndarray, Z: np.ndarray, valid: np.ndarray,
                  up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos(angle between the camera-facing surface normal and `up`) per pixel, and where it is known.

    The normal is the cross product of the windowed row and column differences (see
    `_windowed_difference`), flipped to face the camera; unknown where the depth is invalid or the
    differences are degenerate.
    """
    along_row = (valid[:, 2:] & valid[:, :-2]).astype(np.float32)
    along_column = (valid[2:] & valid[:-2]).astype(np.float32)
    ux, uy, uz = (_windowed_difference(c, along_row, axis=1) for c in (X, Y, Z))
    vx, vy, vz = (_windowed_difference(c, along_column, axis=0) for c in (X, Y, Z))
    nx = uy * vz - uz * vy
    ny = uz * vx - ux * vz
    nz = ux * vy - uy * vx
    norm = np.sqrt(nx * nx + ny * ny + nz * nz)
    ok = valid & (norm > 1e-12)
    np.copyto(norm, np.inf, where=~ok)  # unknown normals: cos 0, and no division by zero
    cos_up = (nx * np.float32(up[0]) + ny * np.float32(up[1]) + nz * np.float32(up[2])) / norm
    away = (nx * X + ny * Y + nz * Z) > 0  # normal . point > 0: it points away from the camera, flip it
    np.negative(cos_up, out=cos_up, where=away)
    return np.clip(cos_up, -1.0, 1.0, out=cos_up), ok


def depth_to_hha(depth_m: np.ndarray, K: np.ndarray, geometry: SensorGeometry) -> np.ndarray:
    """HxW metric depth -> HxWx3 uint8 HHA-like image; invalid pixels are 0 in all channels."""
    depth_m = np.asarray(depth_m)
    if depth_m.ndim != 2 or not np.issubdtype(depth_m.dtype, np.number):
        raise ValueError(f"depth must be a numeric HxW array in metres, got shape {depth_m.shape}")
    K = check_intrinsics(K)
    valid = valid_depth(depth_m)
    z = np.where(valid, depth_m, 0).astype(np.float32)
    X, Y, Z = backproject(z, K)
    up = geometry.up_in_camera()
    cos_up, has_normal = normal_cos_up(X, Y, Z, valid, up)
    angle = np.where(has_normal, np.degrees(np.arccos(cos_up)), np.float32(UNKNOWN_ANGLE_DEG))
    height = geometry.camera_height + (X * up[0] + Y * up[1] + Z * up[2])
    hha = np.empty(z.shape + (3,), np.uint8)
    for channel, code in enumerate((depth_code(np.where(valid, z, 1.0)), height_code(height), angle_code(angle))):
        code *= valid  # invalid depth: 0 in every channel
        hha[..., channel] = code
    return hha
