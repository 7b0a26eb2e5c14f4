"""Surface appearance: per-pixel albedo, emission, LiDAR reflectivity and class from hit points.

Textures are anchored to each object (coordinates relative to its bounding box), so they move with it
and ego-motion makes them fire events the way real texture does. Patterns that matter for sensors are
explicit: retro-reflective paint, signs and plates (bright in LiDAR), glass (dark, weak returns),
windows and lamps that light up at night.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from charm_core.classes import CLASS_ID
from charm_core.data.synthetic.primitives import Primitives
from charm_core.data.synthetic.raycast import GROUND

# (x, y) of ground points -> (class ids, albedo, LiDAR reflectivity): the street's ground painter
GroundPainter = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]

(PLAIN, FACADE, FOLIAGE, BARK, CAR_FWD, CAR_BWD, GLASS, RUBBER, METAL, SIGN_NEGX, SIGN_POSX, SIGNAL_NEGX,
 SIGNAL_POSX, LAMP, CLOTH, SIDEWALK, BRICK, BUS, GRASS, PLANKS) = range(20)
N_MATERIALS = 20

_NOISE_SIZE = 512


def _noise_table() -> np.ndarray:
    """Tileable multi-octave value noise in [0, 1], fixed for every process (texture only)."""
    rng = np.random.default_rng(20250805)
    out = np.zeros((_NOISE_SIZE, _NOISE_SIZE), np.float32)
    for cells, weight in ((8, 0.45), (32, 0.3), (128, 0.15), (512, 0.1)):
        grid = rng.random((cells, cells), dtype=np.float32)
        reps = _NOISE_SIZE // cells
        # bilinear upsample with wrap-around, so the table tiles seamlessly
        i = (np.arange(_NOISE_SIZE) + 0.5) / reps - 0.5
        i0 = np.floor(i).astype(int)
        f = (i - i0).astype(np.float32)
        a, b = i0 % cells, (i0 + 1) % cells
        rows = grid[a] * (1 - f)[:, None] + grid[b] * f[:, None]
        out += weight * (rows[:, a] * (1 - f)[None, :] + rows[:, b] * f[None, :])
    out -= out.min()
    return out / out.max()


NOISE = _noise_table()


def noise(a: np.ndarray, b: np.ndarray, scale: float) -> np.ndarray:
    """Texture lookup at 2-D surface coordinates (metres) and spatial frequency `scale` (texels/m)."""
    i = np.floor(a * scale).astype(np.int64) & (_NOISE_SIZE - 1)
    j = np.floor(b * scale).astype(np.int64) & (_NOISE_SIZE - 1)
    return NOISE[i, j]


def _hash01(*ints: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer tuple (window lit or not, ...)."""
    h = np.zeros(np.broadcast(*ints).shape, dtype=np.uint64)
    for k in ints:
        h = (h ^ np.asarray(k).astype(np.int64).astype(np.uint64)) * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(29)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass
class Surface:
    """Appearance of N hit points."""

    albedo: np.ndarray        # (N, 3) linear
    emission: np.ndarray      # (N, 3) linear radiance added regardless of lighting
    reflectivity: np.ndarray  # (N,) LiDAR reflectivity 0..1
    cls: np.ndarray           # (N,) uint8 train id
    wet: np.ndarray           # (N,) bool: horizontal ground that rain makes dark and glossy


def _face_coords(q: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-D texture coordinates on the face a point lies on (picked by the dominant normal axis)."""
    ax, ay, az = np.abs(n[:, 0]), np.abs(n[:, 1]), np.abs(n[:, 2])
    x_face = (ax >= ay) & (ax >= az)
    z_face = ~x_face & (az >= ay)
    a = np.where(x_face, q[:, 1], q[:, 0])
    b = np.where(z_face, q[:, 1], q[:, 2])
    return a, b


@dataclass
class _Patch:
    """The hit points of one material, in object-local terms."""

    q: np.ndarray        # (n, 3) position relative to the object's AABB minimum
    n: np.ndarray        # (n, 3) normal
    size: np.ndarray     # (n, 3) object AABB size
    var: np.ndarray      # (n,) per-object variant
    base: np.ndarray     # (n, 3) object colour
    a: np.ndarray        # (n,) texture coordinate
    b: np.ndarray        # (n,) texture coordinate
    alb: np.ndarray      # (n, 3) out: albedo (pre-filled with a noisy base colour)
    refl: np.ndarray     # (n,) out: LiDAR reflectivity (pre-filled 0.3)
    em: np.ndarray       # (n, 3) out: emission (pre-filled 0)


def surface(points: np.ndarray, normals: np.ndarray, prim: np.ndarray, prims: Primitives, ground: GroundPainter,
            night: bool, stamp: float) -> Surface:
    """Appearance of world hit points (N, 3) with their normals and prim indices (GROUND for the
    ground plane, which `ground` classifies and paints). `stamp` drives the traffic-light cycle."""
    n_pts = len(points)
    albedo = np.zeros((n_pts, 3), np.float32)
    emission = np.zeros((n_pts, 3), np.float32)
    refl = np.zeros(n_pts, np.float32)
    cls = np.full(n_pts, CLASS_ID["Sky"], np.uint8)
    wet = np.zeros(n_pts, bool)

    g = np.flatnonzero(prim == GROUND)
    if len(g):
        cls[g], albedo[g], refl[g] = ground(points[g, 0], points[g, 1])
        wet[g] = True
    solid = np.flatnonzero(prim >= 0)
    if not len(solid):
        return Surface(albedo, emission, refl, cls, wet)
    p = prim[solid]
    cls[solid] = prims.cls[p]
    wet[solid[normals[solid, 2] > 0.9]] = True
    mat = prims.material[p]
    order = np.argsort(mat, kind="stable")
    bounds = np.searchsorted(mat[order], np.arange(N_MATERIALS + 1))
    for mat_id in range(N_MATERIALS):
        sel = order[bounds[mat_id]:bounds[mat_id + 1]]
        if not len(sel):
            continue
        idx, pp = solid[sel], p[sel]
        q = points[idx] - prims.lo[pp]
        n = normals[idx]
        a, b = _face_coords(q, n)
        var = prims.variant[pp].astype(np.float64)
        a = a + 97.0 * var
        base = prims.color[pp]
        patch = _Patch(q, n, prims.hi[pp] - prims.lo[pp], var, base, a, b,
                       base * (0.8 + 0.4 * noise(a, b, 3.0))[:, None], np.full(len(idx), 0.3, np.float32),
                       np.zeros((len(idx), 3), np.float32))
        if mat_id in _HANDLERS:          # materials without a handler keep the noisy base colour
            _HANDLERS[mat_id](patch, night, stamp)
        albedo[idx], refl[idx], emission[idx] = patch.alb, patch.refl, patch.em
    return Surface(albedo, emission, refl, cls, wet)


Handler = Callable[[_Patch, bool, float], None]   # (patch, night, stamp) -> fills alb / refl / em


def _metal(p: _Patch, night: bool, stamp: float) -> None:
    p.refl[:] = 0.35


def _foliage(p: _Patch, night: bool, stamp: float) -> None:
    t = noise(p.a, p.b, 9.0) * 0.6 + noise(p.b, p.a, 2.0) * 0.4
    p.alb[:] = p.base * (0.35 + 1.3 * t)[:, None]
    p.refl[:] = 0.45


def _bark(p: _Patch, night: bool, stamp: float) -> None:
    p.alb[:] = p.base * (0.6 + 0.6 * noise(p.a * 8, p.b, 1.5))[:, None]
    p.refl[:] = 0.35


def _glass(p: _Patch, night: bool, stamp: float) -> None:
    p.alb[:] = (0.035 + 0.03 * noise(p.a, p.b, 1.0))[:, None]
    p.refl[:] = 0.06


def _rubber(p: _Patch, night: bool, stamp: float) -> None:
    p.alb[:] = 0.025
    p.refl[:] = 0.05


def _cloth(p: _Patch, night: bool, stamp: float) -> None:
    p.alb[:] = p.base * (0.75 + 0.5 * noise(p.a, p.b, 12.0))[:, None]
    p.refl[:] = 0.25


def _lamp(p: _Patch, night: bool, stamp: float) -> None:
    """Street-lamp head: its underside glows at night."""
    p.alb[:] = 0.3
    p.refl[:] = 0.4
    if night:
        p.em[p.n[:, 2] < -0.5] = (3.0, 2.6, 1.8)


def _sidewalk(p: _Patch, night: bool, stamp: float) -> None:
    """Paving slabs with darker joints on top; the curb face is plain, lighter concrete."""
    top = p.n[:, 2] > 0.5
    joint = (np.mod(p.q[:, 0] + 0.03, 0.6) < 0.05) | (np.mod(p.q[:, 1] + 0.03, 0.6) < 0.05)
    shade = np.where(top & joint, 0.55, 0.85 + 0.3 * noise(p.q[:, 0], p.q[:, 1], 8.0))
    p.alb[:] = p.base * np.where(top, shade, 1.15)[:, None]


def _brick(p: _Patch, night: bool, stamp: float) -> None:
    row = np.floor(p.b / 0.075)
    col = np.floor(p.a / 0.22 + 0.5 * (row % 2))
    mortar = (np.mod(p.b, 0.075) < 0.012) | (np.mod(p.a + 0.11 * (row % 2), 0.22) < 0.012)
    tone = 0.75 + 0.5 * _hash01(row, col)
    p.alb[:] = np.where(mortar[:, None], np.float32(0.45), p.base * tone[:, None])


def _bus(p: _Patch, night: bool, stamp: float) -> None:
    """Bus body with a band of dark windows (lit inside at night)."""
    side = np.abs(p.n[:, 2]) < 0.5
    band = side & (p.q[:, 2] > 0.9) & (p.q[:, 2] < 2.0)
    p.alb[band] = 0.04
    p.refl[band] = 0.06
    if night:
        p.em[band] = (0.25, 0.25, 0.22)


def _grass(p: _Patch, night: bool, stamp: float) -> None:
    """Lawn / verge on raised boxes: the same look as terrain on the ground plane."""
    mix = noise(p.q[:, 0] * 0.3, p.q[:, 1] * 0.3, 1.0)[:, None]
    p.alb[:] = p.base * (1 - 0.4 * mix) * (0.7 + 0.6 * noise(p.q[:, 1], p.q[:, 0], 10.0))[:, None]
    p.refl[:] = 0.35


def _planks(p: _Patch, night: bool, stamp: float) -> None:
    """Wooden board fence: vertical boards with dark gaps."""
    gap = np.mod(p.a, 0.12) < 0.012
    grain = 0.7 + 0.6 * noise(p.a * 10.0, p.b * 0.5, 2.0)
    p.alb[:] = np.where(gap[:, None], np.float32(0.03), p.base * grain[:, None])
    p.refl[:] = 0.25


def _facade(p: _Patch, night: bool, stamp: float) -> None:
    """Building walls: a window grid per floor, shop windows on some ground floors, dark roofs."""
    along = np.where(np.abs(p.n[:, 0]) > 0.5, p.q[:, 1], p.q[:, 0])
    z = p.q[:, 2]
    var = p.var
    pitch = 2.6 + 1.6 * var
    floor_h = 3.0 + 0.5 * ((var * 7.0) % 1.0)
    fa = np.mod(along, pitch) / pitch
    fz = np.mod(z, floor_h) / floor_h
    upper = z > floor_h
    window = upper & (np.abs(fa - 0.5) < 0.22 + 0.1 * var) & (fz > 0.28) & (fz < 0.82)
    shop = ((var * 13.0) % 1.0) > 0.45
    shopfront = ~upper & shop & (z > 0.4) & (z < floor_h - 0.5) & (np.abs(fa - 0.5) < 0.42)
    glass = window | shopfront
    roof = p.n[:, 2] > 0.5
    wall = p.base * (0.75 + 0.5 * noise(along * 0.7, z, 4.0))[:, None]
    out = np.where(glass[:, None], np.float32(0.06) + 0.05 * p.base, wall)
    p.alb[:] = np.where(roof[:, None], np.float32(0.12), out)
    p.refl[:] = np.where(glass, 0.05, 0.3)
    if night:
        lit = glass & (_hash01(np.floor(along / pitch), np.floor(z / floor_h), np.floor(var * 1e6)) < 0.35)
        p.em[lit] = (0.9, 0.7, 0.45)


def _car_body(p: _Patch, forward: float) -> tuple[np.ndarray, np.ndarray]:
    """Paint with number plates and lamps on the front/back faces; returns (head, tail) lamp masks."""
    end = np.abs(p.n[:, 0]) > 0.5
    front = end & (p.n[:, 0] * forward > 0)
    y = p.q[:, 1] - 0.5 * p.size[:, 1]
    z = p.q[:, 2]
    plate = end & (np.abs(y) < 0.26) & (z > 0.08) & (z < 0.2)
    lamp = end & (np.abs(np.abs(y) - 0.5 * p.size[:, 1] + 0.22) < 0.16) & (z > p.size[:, 2] - 0.22)
    p.alb[plate] = 0.75
    p.refl[plate | lamp] = 0.9
    head, tail = lamp & front, lamp & ~front
    p.alb[tail] = (0.5, 0.03, 0.03)
    p.alb[head] = 0.7
    return head, tail


def _car(forward: float) -> Handler:
    """Car/truck body for a vehicle heading `forward` (+1 / -1 along x); lamps glow at night."""
    def handler(p: _Patch, night: bool, stamp: float) -> None:
        head, tail = _car_body(p, forward)
        if night:
            p.em[head] = (4.0, 3.8, 3.0)
            p.em[tail] = (1.5, 0.05, 0.02)
    return handler


def _sign(facing: float) -> Handler:
    """Retro-reflective sign face with a white border toward `facing`; plain metal back."""
    def handler(p: _Patch, night: bool, stamp: float) -> None:
        front = p.n[:, 0] * facing > 0.5
        u = np.abs(p.q[:, 1] / p.size[:, 1] - 0.5)
        v = np.abs(p.q[:, 2] / p.size[:, 2] - 0.5)
        border = np.maximum(u, v) > 0.4
        face = np.where(border[:, None], np.float32(0.8), p.base)
        p.alb[:] = np.where(front[:, None], face, np.float32(0.3))
        p.refl[:] = np.where(front, 0.95, 0.3)
    return handler


_SIGNAL_COLORS = np.array([[3.0, 0.2, 0.1], [3.0, 1.8, 0.1], [0.2, 3.0, 0.8]], np.float32)


def _signal(facing: float) -> Handler:
    """Traffic-light housing with three lamps toward its traffic; one is lit, cycling over time."""
    def handler(p: _Patch, night: bool, stamp: float) -> None:
        p.alb[:] = 0.035
        p.refl[:] = 0.25
        face = p.n[:, 0] * facing > 0.5
        slot = np.floor(3 * (1 - p.q[:, 2] / p.size[:, 2])).clip(0, 2)     # 0 top (red) .. 2 bottom (green)
        cz = (slot + 0.5) / 3 * p.size[:, 2]
        dy = p.q[:, 1] - 0.5 * p.size[:, 1]
        dz = (p.size[:, 2] - p.q[:, 2]) - cz
        disc = face & (dy * dy + dz * dz < (0.38 * p.size[:, 1]) ** 2)
        lit_slot = np.floor((p.var * 3 + stamp / 20.0) % 3)
        on = disc & (slot == lit_slot)
        p.em[on] = _SIGNAL_COLORS[slot[on].astype(int)]
        p.alb[disc & ~on] = 0.08
        p.refl[disc] = 0.8
    return handler


_HANDLERS: dict[int, Handler] = {
    FACADE: _facade, FOLIAGE: _foliage, BARK: _bark, CAR_FWD: _car(1.0), CAR_BWD: _car(-1.0), GLASS: _glass,
    RUBBER: _rubber, METAL: _metal, SIGN_NEGX: _sign(-1.0), SIGN_POSX: _sign(1.0), SIGNAL_NEGX: _signal(-1.0),
    SIGNAL_POSX: _signal(1.0), LAMP: _lamp, CLOTH: _cloth, SIDEWALK: _sidewalk, BRICK: _brick, BUS: _bus,
    GRASS: _grass, PLANKS: _planks,
}
