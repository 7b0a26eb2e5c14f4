"""LiDAR point cloud -> sparse front-view raster in the camera image (DELIVER's `lidar/` PNGs).

Channels (scalings in `codes`): 0 = log-inverse depth along the camera's optical axis (same code as
HHA channel 0), 1 = return intensity, 2 = height above ground (same code as HHA channel 1).
0 in all channels = no return. Where several points land on one pixel the nearest one wins.

Intensity: column 4 of an Nx4 cloud. Values in 0..1 are used as they are; a cloud whose intensities
exceed 1 is taken to be in 0..255 (Velodyne/Ouster-style raw units) and divided by 255.
Nx3 clouds (no intensity) get intensity code 1 (the lowest valid value).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charm_core.encoders.codes import depth_code, height_code, intensity_code
from charm_core.encoders.geometry import SensorGeometry, check_intrinsics, project_points, transform_points

MIN_DEPTH_M = 0.1


def normalized_intensity(points: np.ndarray) -> np.ndarray:
    """Intensity column in 0..1 (see module docstring); zeros for an Nx3 cloud."""
    if points.shape[1] == 3:
        return np.zeros(len(points))
    i = points[:, 3].astype(np.float64)
    finite = i[np.isfinite(i)]
    if finite.size and finite.max() > 1.0:
        i = i / 255.0
    return np.nan_to_num(np.clip(i, 0.0, 1.0))


@dataclass(frozen=True)
class PixelHits:
    """Where LiDAR points land in an image: `inside` indexes the points that hit a pixel (in front of
    the camera by more than MIN_DEPTH_M, within the image), `row`/`col` are their pixels."""

    inside: np.ndarray  # (n,) int64 indices into the cloud
    row: np.ndarray     # (n,) int64
    col: np.ndarray     # (n,) int64
    z: np.ndarray       # (N,) depth along the optical axis of every point (NaN for non-finite ones)
    cam: np.ndarray     # (N, 3) points in the camera optical frame


def project_to_pixels(points: np.ndarray, K: np.ndarray, hw: tuple[int, int], T_cam_lidar: np.ndarray) -> PixelHits:
    """The one LiDAR-to-pixel projection: the encoder rasterizes with it and the node labels points
    with it, so a point's label is read from the pixel the network saw it at."""
    K = check_intrinsics(K)
    h, w = (int(x) for x in hw)
    with np.errstate(invalid="ignore", over="ignore"):
        # non-finite points stay NaN/inf through here and fail the `inside` test
        cam = transform_points(T_cam_lidar, np.asarray(points)[:, :3])
        u, v, z = project_points(cam, K)
        col, row = np.rint(u), np.rint(v)
        inside = np.flatnonzero((z > MIN_DEPTH_M) & (col >= 0) & (col < w) & (row >= 0) & (row < h))
    return PixelHits(inside, row[inside].astype(np.int64), col[inside].astype(np.int64), z, cam)


def lidar_to_raster(points: np.ndarray, K: np.ndarray, hw: tuple[int, int],
                    geometry: SensorGeometry) -> np.ndarray:
    """Nx3/Nx4 points in the LiDAR frame -> HxWx3 uint8 raster (0 = no return, nearest point wins)."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] not in (3, 4):
        raise ValueError(f"points must be Nx3 or Nx4 (x, y, z[, intensity]), got shape {points.shape}")
    h, w = (int(x) for x in hw)
    raster = np.zeros((h, w, 3), dtype=np.uint8)
    hit = project_to_pixels(points, K, (h, w), geometry.T_cam_lidar)
    pix = hit.row * w + hit.col
    nearest = _nearest_per_pixel(pix, hit.z[hit.inside], h * w)
    winners, idx = hit.inside[nearest], pix[nearest]
    flat = raster.reshape(-1, 3)
    flat[idx, 0] = depth_code(hit.z[winners])
    flat[idx, 1] = intensity_code(normalized_intensity(points)[winners])
    flat[idx, 2] = height_code(geometry.height_above_ground(hit.cam[winners]))
    return raster


def _nearest_per_pixel(pix: np.ndarray, z: np.ndarray, size: int) -> np.ndarray:
    """Indices of the points that win their pixel: smallest z, and among equal z the first point.

    Two scatter-min passes over a z-buffer instead of sorting all points by (pixel, z)."""
    zbuf = np.full(size, np.inf)
    np.minimum.at(zbuf, pix, z)
    nearest = np.flatnonzero(z == zbuf[pix])
    first = np.full(size, len(z))
    np.minimum.at(first, pix[nearest], nearest)
    return nearest[first[pix[nearest]] == nearest]
