"""Vectorized ray casting of Primitives and the ground plane, for a camera or a spinning LiDAR.

Rays come in a 2-D grid (image rows/columns or LiDAR rings/azimuths) sharing one origin. Each solid is
culled to the grid rectangle its bounding box can cover; the rays inside all rectangles are
intersected in one vectorized pass per solid kind and the nearest hit per ray is kept (z-buffer).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charm_core.data.synthetic.primitives import BOX, CYLINDER, ELLIPSOID, FENCE, Primitives

GROUND = -1
SKY = -2
EPS_T = 1e-3
NEAR = 0.05
# Solids whose bounding box spans less than this many pixels are skipped (they would alias anyway).
MIN_PIXELS = 0.3

# Fence surface: vertical bars every FENCE_PITCH metres, FENCE_FILL of it solid, plus two rails.
FENCE_PITCH = 0.16
FENCE_FILL = 0.35

_CORNER_BITS = np.array([[(i >> a) & 1 for a in range(3)] for i in range(8)], dtype=bool)  # (8, 3)
_EDGES = np.array([(i, i | (1 << a)) for i in range(8) for a in range(3) if not (i >> a) & 1])  # (12, 2)


def _corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(P, 3) boxes -> (P, 8, 3) corners."""
    return np.where(_CORNER_BITS[None], hi[:, None, :], lo[:, None, :])


def _box_distance(origin: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Euclidean distance from a point to each AABB (0 inside)."""
    gap = np.maximum(np.maximum(lo - origin, origin - hi), 0.0)
    return np.linalg.norm(gap, axis=1)


@dataclass
class RayGrid:
    """Rays (H, W, 3) from one world origin; `circular` grids wrap around in columns (360° scans)."""

    origin: np.ndarray
    dirs: np.ndarray
    circular: bool

    @property
    def shape(self) -> tuple[int, int]:
        return self.dirs.shape[:2]


class PinholeGrid(RayGrid):
    """One ray per pixel centre; directions have unit optical-axis component, so t is depth z."""

    def __init__(self, origin: np.ndarray, R_world_cam: np.ndarray, K: np.ndarray, hw: tuple[int, int]) -> None:
        h, w = hw
        v, u = np.mgrid[0:h, 0:w].astype(np.float64)
        yn = (v - K[1, 2]) / K[1, 1]
        xn = (u - K[0, 2] - K[0, 1] * yn) / K[0, 0]
        cam = np.stack([xn, yn, np.ones_like(xn)], axis=-1)
        dirs = (cam @ R_world_cam.T).astype(np.float32)
        dirs[dirs == 0] = 1e-9
        super().__init__(np.asarray(origin, float), dirs, circular=False)
        self.R = np.asarray(R_world_cam, float)
        self.K = np.asarray(K, float)

    def rects(self, lo: np.ndarray, hi: np.ndarray, max_t: float) -> np.ndarray:
        """(P, 4) [row0, row1, col0, col1) pixel rectangles that can see each box (empty if culled).

        Box edges crossing the near plane are clipped to it, so boxes beside or behind the camera
        still project correctly; boxes smaller than MIN_PIXELS are dropped."""
        h, w = self.shape
        cam = (_corners(lo, hi) - self.origin) @ self.R            # (P, 8, 3) camera frame
        a, b = cam[:, _EDGES[:, 0]], cam[:, _EDGES[:, 1]]           # (P, 12, 3)
        crosses = (a[..., 2] - NEAR) * (b[..., 2] - NEAR) < 0
        s = np.where(crosses, (NEAR - a[..., 2]) / np.where(crosses, b[..., 2] - a[..., 2], 1.0), 0.0)
        clipped = a + s[..., None] * (b - a)
        pts = np.concatenate([cam, clipped], axis=1)                # (P, 20, 3)
        ok = np.concatenate([cam[..., 2] >= NEAR, crosses], axis=1)
        z = np.where(ok, np.maximum(pts[..., 2], NEAR), 1.0)
        yn, xn = pts[..., 1] / z, pts[..., 0] / z
        u = self.K[0, 0] * xn + self.K[0, 1] * yn + self.K[0, 2]
        v = self.K[1, 1] * yn + self.K[1, 2]
        big = 1e9
        u0 = np.where(ok, u, big).min(1)
        u1 = np.where(ok, u, -big).max(1)
        v0 = np.where(ok, v, big).min(1)
        v1 = np.where(ok, v, -big).max(1)
        dist = _box_distance(self.origin, lo, hi)
        extent = np.linalg.norm(hi - lo, axis=1)
        tiny = extent * self.K[0, 0] < MIN_PIXELS * np.maximum(dist, 1e-6)
        dead = ~ok.any(1) | (dist > max_t) | tiny
        r0 = np.clip(np.floor(v0), 0, h)
        r1 = np.clip(np.ceil(v1) + 1, 0, h)
        c0 = np.clip(np.floor(u0), 0, w)
        c1 = np.clip(np.ceil(u1) + 1, 0, w)
        rect = np.stack([r0, r1, c0, c1], axis=1).astype(np.int64)
        rect[dead] = 0
        return rect


class SphericalGrid(RayGrid):
    """A spinning LiDAR: rows are rings (ascending elevation), columns azimuths over 360°."""

    def __init__(self, origin: np.ndarray, R_world_lidar: np.ndarray, elevations: np.ndarray, n_azimuth: int) -> None:
        self.elevations = np.asarray(elevations, float)
        self.azimuths = -np.pi + (np.arange(n_azimuth) + 0.5) * (2 * np.pi / n_azimuth)
        el, az = np.meshgrid(self.elevations, self.azimuths, indexing="ij")
        local = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)
        dirs = (local @ np.asarray(R_world_lidar, float).T).astype(np.float32)
        dirs[dirs == 0] = 1e-9
        super().__init__(np.asarray(origin, float), dirs, circular=True)
        self.R = np.asarray(R_world_lidar, float)
        self.local_dirs = local

    def rects(self, lo: np.ndarray, hi: np.ndarray, max_t: float) -> np.ndarray:
        """(P, 4) [ring0, ring1, col0, col1) of each box; col1 may pass n_azimuth (columns wrap).

        Elevation bounds use the nearest and farthest horizontal distance of the footprint (a box
        top is steepest above its nearest point, not at a corner); azimuths span the corners."""
        n_az = self.shape[1]
        o = self.origin
        rel = (_corners(lo, hi) - o) @ self.R                       # (P, 8, 3) LiDAR frame
        dz_lo, dz_hi = lo[:, 2] - o[2], hi[:, 2] - o[2]
        gap = np.maximum(np.maximum(lo[:, :2] - o[:2], o[:2] - hi[:, :2]), 0.0)
        d_min = np.linalg.norm(gap, axis=1)
        d_max = np.linalg.norm(rel[..., :2], axis=2).max(1)
        el_hi = np.arctan2(dz_hi, np.where(dz_hi > 0, d_min, d_max))
        el_lo = np.arctan2(dz_lo, np.where(dz_lo < 0, d_min, d_max))
        r0 = np.searchsorted(self.elevations, el_lo, side="left")
        r1 = np.searchsorted(self.elevations, el_hi, side="right")
        az = np.arctan2(rel[..., 1], rel[..., 0])
        centre = np.arctan2(rel[..., 1].mean(1), rel[..., 0].mean(1))
        off = (az - centre[:, None] + np.pi) % (2 * np.pi) - np.pi
        step = 2 * np.pi / n_az
        a0 = centre + off.min(1)
        a1 = centre + off.max(1)
        c0 = np.floor((a0 + np.pi) / step - 0.5).astype(np.int64)
        c1 = np.ceil((a1 + np.pi) / step - 0.5).astype(np.int64) + 1
        inside = d_min == 0
        c0 = np.where(inside, 0, c0)
        c1 = np.where(inside, n_az, np.minimum(c1, c0 + n_az))
        c1, c0 = c1 - n_az * (c0 // n_az), c0 % n_az
        dead = _box_distance(o, lo, hi) > max_t
        rect = np.stack([r0, r1, c0, c1], axis=1).astype(np.int64)
        rect[dead] = 0
        return rect


@dataclass
class Hits:
    """Nearest hit per ray: t (inf = nothing), prim index (GROUND / SKY for non-solids)."""

    grid: RayGrid
    t: np.ndarray
    prim: np.ndarray

    def points(self, mask: np.ndarray) -> np.ndarray:
        """World points of the rays selected by a boolean (H, W) mask."""
        return self.grid.origin + self.t[mask, None].astype(np.float64) * self.grid.dirs[mask]


# Intersections work on flat per-candidate arrays: direction (dx, dy, dz), its inverse (for slabs) and the
# solid's AABB relative to the ray origin. Component-wise arrays keep every step a fast 1-D numpy op.

def _slab(ix, iy, iz, lo, hi):
    """Entry/exit ray parameters of boxes."""
    ax, bx = lo[0] * ix, hi[0] * ix
    ay, by = lo[1] * iy, hi[1] * iy
    az, bz = lo[2] * iz, hi[2] * iz
    t0 = np.maximum(np.maximum(np.minimum(ax, bx), np.minimum(ay, by)), np.minimum(az, bz))
    t1 = np.minimum(np.minimum(np.maximum(ax, bx), np.maximum(ay, by)), np.maximum(az, bz))
    return t0, t1


def _intersect_box(d, inv, lo, hi):
    t0, t1 = _slab(*inv, lo, hi)
    return np.where((t0 <= t1) & (t0 > EPS_T), t0, np.float32(np.inf))


def _intersect_fence(d, inv, lo, hi):
    t = _intersect_box(d, inv, lo, hi)
    tf = np.where(np.isfinite(t), t, np.float32(0.0))
    sx, sy, sz = hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]
    along = np.where(sx >= sy, tf * d[0] - lo[0], tf * d[1] - lo[1])
    qz = tf * d[2] - lo[2]
    bar = np.mod(along, FENCE_PITCH) < FENCE_FILL * FENCE_PITCH
    rails = (qz > sz - 0.07) | (np.abs(qz - 0.25) < 0.035)
    return np.where(bar | rails, t, np.float32(np.inf))


def _intersect_cylinder(d, inv, lo, hi):
    dx, dy, dz = d
    ox, oy = -0.5 * (lo[0] + hi[0]), -0.5 * (lo[1] + hi[1])
    r = 0.5 * (hi[0] - lo[0])
    a = dx * dx + dy * dy
    b = 2 * (ox * dx + oy * dy)
    c = ox * ox + oy * oy - r * r
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (-b - np.sqrt(disc)) / (2 * a)
        z = t * dz
        side = (disc >= 0) & (t > EPS_T) & (z >= lo[2]) & (z <= hi[2])
        tc = hi[2] * inv[2]
        px, py = ox + tc * dx, oy + tc * dy
        cap = (hi[2] < 0) & (tc > EPS_T) & (px * px + py * py <= r * r)
    return np.minimum(np.where(side, t, np.float32(np.inf)), np.where(cap, tc, np.float32(np.inf)))


def _intersect_ellipsoid(d, inv, lo, hi):
    rx, ry, rz = 0.5 * (hi[0] - lo[0]), 0.5 * (hi[1] - lo[1]), 0.5 * (hi[2] - lo[2])
    ox, oy, oz = -0.5 * (lo[0] + hi[0]) / rx, -0.5 * (lo[1] + hi[1]) / ry, -0.5 * (lo[2] + hi[2]) / rz
    ex, ey, ez = d[0] / rx, d[1] / ry, d[2] / rz
    a = ex * ex + ey * ey + ez * ez
    b = 2 * (ox * ex + oy * ey + oz * ez)
    c = ox * ox + oy * oy + oz * oz - 1
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / (2 * a)
    return np.where((disc >= 0) & (t > EPS_T), t, np.float32(np.inf))


_INTERSECT = {BOX: _intersect_box, FENCE: _intersect_fence, CYLINDER: _intersect_cylinder,
              ELLIPSOID: _intersect_ellipsoid}


def candidates(rect: np.ndarray, width: int, circular: bool) -> tuple[np.ndarray, np.ndarray]:
    """(solid index, flat ray index) of every ray inside every solid's grid rectangle."""
    rect = rect.astype(np.int32)
    rows, cols = rect[:, 1] - rect[:, 0], rect[:, 3] - rect[:, 2]
    area = np.where((rows > 0) & (cols > 0), rows * cols, 0)
    n = int(area.sum())
    pid = np.repeat(np.arange(len(rect), dtype=np.int32), area)
    local = np.arange(n, dtype=np.int32) - np.repeat(np.cumsum(area, dtype=np.int32) - area, area)
    w = cols[pid]
    rr = rect[pid, 0] + local // w
    cc = rect[pid, 2] + local % w
    if circular:
        cc %= width
    return pid, rr * width + cc


def cast(grid: PinholeGrid | SphericalGrid, prims: Primitives, max_t: float) -> Hits:
    """Nearest intersection of every ray with the ground plane z = 0 and the solids, up to max_t."""
    h, w = grid.shape
    o = grid.origin
    dx, dy, dz = (np.ascontiguousarray(grid.dirs[..., i]).reshape(-1) for i in range(3))
    with np.errstate(divide="ignore"):
        tg = np.where(dz < 0, np.float32(-o[2]) / dz, np.float32(np.inf)).astype(np.float32)
    ground = tg < max_t
    t = np.where(ground, tg, np.float32(np.inf)).astype(np.float32)
    prim = np.where(ground, GROUND, SKY).astype(np.int32)
    if len(prims):
        order = np.argsort(prims.kind, kind="stable")       # one contiguous run of candidates per kind
        kinds = prims.kind[order]
        rect = grid.rects(prims.lo[order], prims.hi[order], max_t)
        pid, pix = candidates(rect, w, grid.circular)
        if len(pid):
            lo_rel = (prims.lo[order] - o).astype(np.float32).T
            hi_rel = (prims.hi[order] - o).astype(np.float32).T
            cand_kind = kinds[pid]
            tt = np.empty(len(pid), np.float32)
            kinds_n = len(_INTERSECT)
            bounds = np.searchsorted(cand_kind, np.arange(kinds_n), side="left").tolist() + [len(pid)]
            for kind in range(kinds_n):
                a, b = bounds[kind], bounds[kind + 1]
                if a == b:
                    continue
                p, q = pid[a:b], pix[a:b]
                d = (dx[q], dy[q], dz[q])
                inv = (1.0 / d[0], 1.0 / d[1], 1.0 / d[2])
                tt[a:b] = _INTERSECT[kind](d, inv, lo_rel[:, p], hi_rel[:, p])
            hit = tt < np.minimum(t[pix], max_t)
            pix, tt, pid = pix[hit], tt[hit], pid[hit]
            np.minimum.at(t, pix, tt)
            win = tt == t[pix]
            prim[pix[win]] = order[pid[win]]
    return Hits(grid, t.reshape(h, w), prim.reshape(h, w))


def surface_normals(points: np.ndarray, prim: np.ndarray, prims: Primitives) -> np.ndarray:
    """Unit world normals at hit points (N, 3) of the given prim indices (GROUND -> up)."""
    n = np.zeros_like(points)
    n[:, 2] = 1.0
    solid = np.flatnonzero(prim >= 0)
    if not len(solid):
        return n
    p = prim[solid]
    lo, hi, kind = prims.lo[p], prims.hi[p], prims.kind[p]
    c = 0.5 * (lo + hi)
    half = 0.5 * (hi - lo)
    rel = (points[solid] - c) / half                 # in [-1, 1]^3 for points on the solid
    rx, ry, rz = rel[:, 0], rel[:, 1], rel[:, 2]
    ax, ay, az = np.abs(rx), np.abs(ry), np.abs(rz)
    # boxes and fences: the face whose slab coordinate is at +-1
    on_x = (ax >= ay) & (ax >= az)
    on_z = ~on_x & (az >= ay)
    out = np.zeros_like(rel)
    out[:, 0] = np.where(on_x, np.sign(rx), 0.0)
    out[:, 2] = np.where(on_z, np.sign(rz), 0.0)
    out[:, 1] = np.where(~on_x & ~on_z, np.sign(ry), 0.0)
    cyl = kind == CYLINDER
    top = cyl & (rz >= 1 - 1e-4)
    side = cyl & ~top
    out[side] = np.stack([rx[side], ry[side], np.zeros(side.sum())], axis=1)
    out[top] = (0.0, 0.0, 1.0)
    ell = kind == ELLIPSOID
    out[ell] = rel[ell] / half[ell]
    out /= np.maximum(np.sqrt((out * out).sum(1)), 1e-12)[:, None]
    n[solid] = out
    return n
