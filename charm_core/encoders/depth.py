"""Metric depth -> HHA-like 3-channel image (the `hha/` PNGs and the node's depth input).

Channels (scalings in `codes`): 0 = log-inverse depth, 1 = height above the ground plane,
2 = angle between the surface normal and "up". Invalid depth (0, NaN, +/-inf, negative) becomes 0 in
all three channels, so "no measurement" can never be confused with "far away".
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


def backproject(depth_m: np.ndarray, K: np.ndarray) -> np.ndarray:
    """HxW depth (z along the optical axis, invalid = 0) -> HxWx3 camera-frame points."""
    h, w = depth_m.shape
    fx, s, cx, fy, cy = K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]
    yn = ((np.arange(h, dtype=np.float64) - cy) / fy)[:, None]
    xn = (np.arange(w, dtype=np.float64)[None, :] - cx - s * yn) / fx
    z = depth_m.astype(np.float64)
    return np.stack([xn * z, np.broadcast_to(yn, z.shape) * z, z], axis=-1)


def surface_normals(points: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals facing the camera (HxWx3 float32) and a mask of pixels where one could be estimated.

    Central differences along rows (u) and columns (v), zero where either neighbour is invalid,
    summed over NORMAL_WINDOW^2 pixels; the normal is their cross product. float32 throughout: the
    result is quantized to whole degrees, and this runs per depth frame in the node.
    """
    h, w, _ = points.shape
    du = np.zeros((h, w, 3), np.float32)
    dv = np.zeros((h, w, 3), np.float32)
    np.subtract(points[:, 2:], points[:, :-2], out=du[:, 1:-1], casting="same_kind")
    np.subtract(points[2:, :], points[:-2, :], out=dv[1:-1, :], casting="same_kind")
    du[:, 1:-1] *= (valid[:, 2:] & valid[:, :-2])[..., None]
    dv[1:-1, :] *= (valid[2:, :] & valid[:-2, :])[..., None]
    k = (NORMAL_WINDOW, NORMAL_WINDOW)
    su = cv2.boxFilter(du, -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT)
    sv = cv2.boxFilter(dv, -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT)
    n = np.cross(su, sv)
    norm = np.sqrt(np.einsum("hwc,hwc->hw", n, n))
    ok = valid & (norm > 1e-12)
    n /= np.where(ok, norm, 1.0)[..., None]
    facing = np.einsum("hwc,hwc->hw", n, points.astype(np.float32))
    n[facing > 0] *= -1.0
    return n, ok


def depth_to_hha(depth_m: np.ndarray, K: np.ndarray, geometry: SensorGeometry) -> np.ndarray:
    """HxW metric depth -> HxWx3 uint8 HHA-like image; invalid pixels are 0 in all channels."""
    depth_m = np.asarray(depth_m)
    if depth_m.ndim != 2 or not np.issubdtype(depth_m.dtype, np.number):
        raise ValueError(f"depth must be a numeric HxW array in metres, got shape {depth_m.shape}")
    K = check_intrinsics(K)
    valid = valid_depth(depth_m)
    z = np.where(valid, depth_m, 0.0)
    points = backproject(z, K)
    normals, has_normal = surface_normals(points, valid)
    cos_up = np.clip(normals @ geometry.up_in_camera(), -1.0, 1.0)
    angle = np.where(has_normal, np.degrees(np.arccos(cos_up)), UNKNOWN_ANGLE_DEG)
    hha = np.stack([depth_code(np.where(valid, z, 1.0)), height_code(geometry.height_above_ground(points)),
                    angle_code(angle)], axis=-1)
    hha[~valid] = 0
    return hha
