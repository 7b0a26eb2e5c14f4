"""sensor_msgs/CameraInfo <-> the pinhole intrinsics K and image size, with plausibility checks."""
from __future__ import annotations

from typing import Any

import numpy as np

from charm_ros.msgs.fields import ConversionError, fresh_header


def camera_info_to_k(msg: Any) -> tuple[np.ndarray, tuple[int, int]]:
    """CameraInfo -> (3x3 float64 intrinsics, (height, width)) of the image the camera publishes.

    Binning and ROI as REP 104 and image_geometry's PinholeCameraModel apply them: binning 0 means 1,
    an all-zero ROI means the full image, and the image is the ROI (full-resolution coordinates)
    binned, so fx, fy divide by the binning and the principal point moves by the ROI offset, then
    divides. A camera with lens distortion (any nonzero D) gives P's left 3x3 instead of K: the
    intrinsics of its rectified image (image_rect), which is what the encoders need (they undistort
    nothing); an unset (all-zero) P falls back to K.
    """
    K, hw, _ = _camera_intrinsics(msg)
    return K, hw


def camera_info_summary(msg: Any) -> str:
    """One line on what camera_info_to_k makes of a CameraInfo (for the node's log)."""
    K, (height, width), notes = _camera_intrinsics(msg)
    return (f"{width}x{height}, fx {K[0, 0]:.1f} fy {K[1, 1]:.1f} cx {K[0, 2]:.1f} cy {K[1, 2]:.1f}"
            + "".join(f"; {n}" for n in notes))


def _camera_intrinsics(msg: Any) -> tuple[np.ndarray, tuple[int, int], list[str]]:
    height, width = int(msg.height), int(msg.width)
    if height <= 0 or width <= 0:
        raise ConversionError(f"camera_info size must be positive, got height={height} width={width}")
    notes = []
    k = _pinhole(msg.k, "k", 9)
    d = np.asarray(getattr(msg, "d", ()), dtype=np.float64)
    p = np.asarray(getattr(msg, "p", ()), dtype=np.float64)
    if np.any(d != 0) and p.size == 12 and p.any():
        k = _pinhole(p.reshape(3, 4)[:, :3], "p", 9)
        notes.append(f"{msg.distortion_model or 'lens'} distortion: the rectified image's intrinsics (P) are "
                     "used, so the input must be rectified (image_rect)")
    bx, by = (int(getattr(msg, f"binning_{a}", 0)) or 1 for a in "xy")
    roi = getattr(msg, "roi", None)
    x0, y0, rw, rh = (0, 0, 0, 0) if roi is None else (int(roi.x_offset), int(roi.y_offset), int(roi.width),
                                                        int(roi.height))
    if (x0, y0, rw, rh) == (0, 0, 0, 0):
        rw, rh = width, height
    if min(bx, by, x0, y0) < 0 or rw <= 0 or rh <= 0 or x0 + rw > width or y0 + rh > height:
        raise ConversionError(f"camera_info roi (x_offset={x0}, y_offset={y0}, width={rw}, height={rh}) "
                              f"does not lie inside the {width}x{height} image")
    if rw // bx == 0 or rh // by == 0:
        raise ConversionError(f"camera_info binning {bx}x{by} leaves no pixel of its {rw}x{rh} roi")
    if (bx, by) != (1, 1) or (rw, rh) != (width, height):
        k[0, :] /= bx
        k[0, 2] -= x0 / bx
        k[1, 1:] /= by
        k[1, 2] -= y0 / by
        notes.append(f"roi {rw}x{rh} at ({x0}, {y0}), binning {bx}x{by}")
    hw = (rh // by, rw // bx)
    _check_plausible(k, hw)
    return k, hw, notes


# Focal lengths outside [size / 100, size * 1000] are no pinhole camera: beyond ~178 degrees or below
# ~0.06 degrees of field of view (a typo, a unit mix-up, an uninitialised field).
FOCAL_RANGE = (1e-2, 1e3)


def _check_plausible(k: np.ndarray, hw: tuple[int, int]) -> None:
    size = max(hw)
    low, high = FOCAL_RANGE[0] * size, FOCAL_RANGE[1] * size
    for name, f in (("fx", k[0, 0]), ("fy", k[1, 1])):
        if not low <= f <= high:
            raise ConversionError(f"camera_info {name} {f:.6g} is not a plausible focal length for a {hw[1]}x{hw[0]} "
                                  f"image (expected {low:g}..{high:g} pixels)")
    for name, c, extent in (("cx", k[0, 2], hw[1]), ("cy", k[1, 2], hw[0])):
        if not -extent <= c <= 2 * extent:
            raise ConversionError(f"camera_info {name} {c:.6g} is far outside the {hw[1]}x{hw[0]} image")
    if not np.allclose(k[2], [0.0, 0.0, 1.0], atol=1e-6):
        raise ConversionError(f"camera_info K's last row must be 0 0 1, got {k[2].tolist()}")


def _pinhole(values: Any, name: str, size: int) -> np.ndarray:
    k = np.asarray(values, dtype=np.float64)
    if k.size != size:
        raise ConversionError(f"camera_info.{name} must have {size} values, got {k.size}")
    k = k.reshape(3, 3).copy()
    if not np.isfinite(k).all() or not k.any():
        raise ConversionError(f"camera_info.{name} must be finite and not all zero (uncalibrated), "
                              f"got {k.ravel().tolist()}")
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        raise ConversionError(f"camera_info.{name} needs positive focal lengths, got fx={k[0, 0]} fy={k[1, 1]}")
    return k


def k_to_camera_info(K: np.ndarray, hw: tuple[int, int], header: Any = None, frame_id: str | None = None) -> Any:
    """3x3 K and (height, width) -> CameraInfo of an ideal camera: plumb_bob, zero D, R = I, P = [K | 0]."""
    from sensor_msgs.msg import CameraInfo

    k = np.asarray(K, dtype=np.float64)
    if k.shape != (3, 3) or not np.isfinite(k).all():
        raise ConversionError(f"K must be a finite 3x3 matrix, got shape {k.shape}")
    height, width = (int(v) for v in hw)
    if height <= 0 or width <= 0:
        raise ConversionError(f"image size must be positive, got {tuple(hw)}")
    msg = CameraInfo()
    msg.header = fresh_header(header, frame_id)
    msg.height, msg.width = height, width
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = k.reshape(-1).copy()
    msg.r = np.eye(3).reshape(-1)
    msg.p = np.hstack([k, np.zeros((3, 1))]).reshape(-1)
    return msg
