"""Light transport for the camera: sky, sun with building shadows, night lamps and headlights,
wet roads, haze/fog. Produces linear radiance (the event camera and the RGB camera both start here).
"""
from __future__ import annotations

import numpy as np

from charm_core.classes import CLASS_ID
from charm_core.data.synthetic.conditions import Weather
from charm_core.data.synthetic.layout import Block
from charm_core.data.synthetic.materials import GLASS, RUBBER, Surface, noise
from charm_core.data.synthetic.primitives import BOX, Lights, Primitives
from charm_core.data.synthetic.raycast import PinholeGrid, candidates

LIGHT_RANGE = 40.0
LAMP_VIEW = 80.0
HEADLIGHT = 20.0           # low-beam intensity (same units as the lamps in props.street_lamp)
SHADOW_CASTERS = np.array([CLASS_ID[c] for c in ("Cars", "Bus", "Truck", "Static")])
MAX_SHADOW = 25.0          # m: longest object shadow considered (low sun behind a bus)
SHADOW_RANGE = 60.0         # m: objects farther from the camera cast no modelled shadow (a few pixels)
CONTACT_MARGIN = 0.6       # m: how far the darkening under a car reaches beyond its footprint


def sky(dirs: np.ndarray, weather: Weather, sun_dir: np.ndarray) -> np.ndarray:
    """Radiance (N, 3) of the sky seen along world directions (N, 3)."""
    d = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    up = np.clip(d[:, 2], 0.0, 1.0)
    mix = np.sqrt(up)[:, None]
    rad = (1 - mix) * np.asarray(weather.horizon, np.float32) + mix * np.asarray(weather.zenith, np.float32)
    if weather.clouds > 0:
        h = 1.0 / np.maximum(up, 0.05)
        cover = noise(d[:, 0] * h * 3.0, d[:, 1] * h * 3.0, 4.0)
        cloud = np.clip((cover - (1.0 - weather.clouds)) * 3.0, 0.0, 1.0)[:, None]
        grey = 0.9 * np.asarray(weather.horizon, np.float32).mean()
        rad = (1 - cloud * 0.8) * rad + cloud * 0.8 * grey * (0.75 + 0.35 * cover[:, None])
    if weather.sun > 0:
        glow = np.clip(d @ sun_dir, 0.0, 1.0)
        rad = rad + (0.6 * glow ** 8 + 6.0 * glow ** 600)[:, None] * np.array([1.0, 0.95, 0.85], np.float32)
    return rad.astype(np.float32)


def sun_visibility(points: np.ndarray, sun_dir: np.ndarray, blocks: list[Block], lot_line: float) -> np.ndarray:
    """1 where the sun reaches a point, 0 in the shadow of the buildings on the sun's side.

    The sun-side facades are treated as one wall along the lot line whose height varies with x:
    the ray towards the sun crosses that wall at x', and is blocked if the building there is taller.
    """
    side = 1 if sun_dir[1] > 0 else -1
    walls = [bl.facades[bl.facade_side == side] for bl in blocks]
    walls = np.concatenate(walls) if walls else np.zeros((0, 4))
    if len(walls) == 0 or abs(sun_dir[1]) < 1e-6:
        return np.ones(len(points), np.float32)
    walls = walls[np.argsort(walls[:, 0])]
    t = (side * lot_line - points[:, 1]) / sun_dir[1]
    xc = points[:, 0] + t * sun_dir[0]
    zc = points[:, 2] + t * sun_dir[2]
    k = np.clip(np.searchsorted(walls[:, 0], xc, side="right") - 1, 0, len(walls) - 1)
    inside = (xc >= walls[k, 0]) & (xc < walls[k, 1])
    blocked = (t > 0) & inside & (walls[k, 3] > zc)
    return np.where(blocked, 0.0, 1.0).astype(np.float32)


def object_shadows(grid: PinholeGrid, hit: np.ndarray, points: np.ndarray, normals: np.ndarray,
                   prims: Primitives, sun_dir: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(sun visibility, sky occlusion) of the hit points of a camera image, from vehicles and street
    furniture: the dark contact patch under a car and, given `sun_dir`, the shadow it casts.

    Only low, upward-facing points (road, sidewalk tops) receive them. Each caster's shadow region
    on the ground is projected into the image, so only the pixels it can darken are tested, with a
    shadow ray against the caster's box (slab test), all casters in one vectorized pass."""
    n = len(points)
    sun_vis = np.ones(n, np.float32)
    occlusion = np.ones(n, np.float32)
    casters = np.flatnonzero(np.isin(prims.cls, SHADOW_CASTERS) & (prims.kind == BOX)
                             & ~np.isin(prims.material, (RUBBER, GLASS)))
    receiver = (normals[:, 2] > 0.9) & (points[:, 2] < 0.5)
    if not len(casters) or not receiver.any():
        return sun_vis, occlusion
    lo, hi = prims.lo[casters], prims.hi[casters]
    region_lo, region_hi = lo.copy(), hi.copy()
    region_lo[:, :2] -= CONTACT_MARGIN
    region_hi[:, :2] += CONTACT_MARGIN
    if sun_dir is not None:   # the ground shadow runs from the footprint away from the sun
        offset = -sun_dir[:2] / max(sun_dir[2], 0.05) * hi[:, 2:3]
        region_lo[:, :2] = np.minimum(region_lo[:, :2], lo[:, :2] + np.clip(offset, -MAX_SHADOW, MAX_SHADOW))
        region_hi[:, :2] = np.maximum(region_hi[:, :2], hi[:, :2] + np.clip(offset, -MAX_SHADOW, MAX_SHADOW))
    region_lo[:, 2], region_hi[:, 2] = 0.0, 0.5
    pid, pix = candidates(grid.rects(region_lo, region_hi, SHADOW_RANGE), grid.shape[1], circular=False)
    point_of_pixel = np.full(hit.size, -1, np.int64)
    point_of_pixel[np.flatnonzero(hit)] = np.arange(n)
    k = point_of_pixel[pix]
    keep = k >= 0
    k, pid = k[keep], pid[keep]
    keep = receiver[k]
    k, pid = k[keep], pid[keep]
    if not len(k):
        return sun_vis, occlusion
    p, blo, bhi = points[k], lo[pid], hi[pid]
    gap = np.hypot(np.maximum(np.maximum(blo[:, 0] - p[:, 0], p[:, 0] - bhi[:, 0]), 0.0),
                   np.maximum(np.maximum(blo[:, 1] - p[:, 1], p[:, 1] - bhi[:, 1]), 0.0))
    under = p[:, 2] < blo[:, 2] + 0.05
    np.minimum.at(occlusion, k, np.where(under, 0.35 + 0.65 * np.clip(gap / CONTACT_MARGIN, 0, 1), 1.0)
                  .astype(np.float32))
    if sun_dir is not None:
        s = np.where(np.abs(sun_dir) < 1e-9, 1e-9, sun_dir)
        ta, tb = (blo - p) / s, (bhi - p) / s
        t0 = np.minimum(ta, tb).max(1)
        t1 = np.maximum(ta, tb).min(1)
        sun_vis[k[(t0 <= t1) & (t1 > 0)]] = 0.0
    return sun_vis, occlusion


def lamp_light(points: np.ndarray, normals: np.ndarray, lights: Lights, camera: np.ndarray) -> np.ndarray:
    """Irradiance (N, 3) from point lights: cosine law, 1/d^2 falloff, cut off at LIGHT_RANGE.

    Lamps farther than LAMP_VIEW from the camera are skipped: what they light covers a few pixels.
    Evaluated as (N, L) matrices: |l - p|^2 = |l|^2 - 2 p.l + |p|^2 and n.(l - p) = n.l - n.p.
    """
    centre = np.asarray(camera, float)
    near = np.linalg.norm(lights.pos - centre, axis=1) < LAMP_VIEW
    pos, color = lights.pos[near] - centre, lights.color[near]
    if not len(pos):
        return np.zeros((len(points), 3), np.float32)
    p = (points - centre).astype(np.float32)
    n = normals.astype(np.float32)
    pos = pos.astype(np.float32)
    d2 = p @ (-2.0 * pos.T)                                     # (N, L)
    d2 += (pos * pos).sum(1)[None, :]
    d2 += (p * p).sum(1)[:, None]
    np.maximum(d2, 1e-6, out=d2)
    w = n @ pos.T                                               # n.(l - p), clipped: back faces get nothing
    w -= (n * p).sum(1)[:, None]
    np.maximum(w, 0.0, out=w)
    w /= np.sqrt(d2) * (d2 + 1.0)
    w[d2 > LIGHT_RANGE ** 2] = 0.0
    return w @ color


def headlights(points: np.ndarray, normals: np.ndarray, camera: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Irradiance (N, 1) of the ego car's low beams: a narrow cone aimed slightly down the road."""
    aim = np.array([axis[0], axis[1], 0.0])
    aim /= max(np.linalg.norm(aim), 1e-9)
    origin = camera + 2.0 * aim - np.array([0.0, 0.0, 0.9])
    beam = aim - np.array([0.0, 0.0, 0.08])
    beam /= np.linalg.norm(beam)
    to = points - origin
    d2 = (to * to).sum(1)
    dist = np.sqrt(np.maximum(d2, 1e-12))
    cone = np.clip((to @ beam) / dist, 0.0, 1.0) ** 24
    cos_l = np.clip(-(normals * to).sum(1) / dist, 0.0, None)
    return (HEADLIGHT * cone * cos_l / (d2 + 1.0))[:, None].astype(np.float32)


def radiance(points: np.ndarray, normals: np.ndarray, view: np.ndarray, surf: Surface, weather: Weather,
             sun_dir: np.ndarray, blocks: list[Block], lot_line: float, lights: Lights,
             shadows: tuple[np.ndarray, np.ndarray], view_axis: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """Outgoing radiance (N, 3) of lit surface points seen along `view` (unit, camera -> point).

    At night the ego car's headlights are a spot light just ahead of and below the camera.
    """
    albedo = surf.albedo.copy()
    wet = surf.wet & (weather.rain > 0)
    albedo[wet] *= 0.55
    sun_vis, occlusion = shadows
    sky_light = np.asarray(weather.ambient, np.float32) * (0.6 + 0.4 * normals[:, 2:3]).astype(np.float32)
    light = sky_light * occlusion[:, None]
    if weather.sun > 0:
        cos_sun = np.clip(normals @ sun_dir, 0.0, None)
        lit = cos_sun * sun_visibility(points, sun_dir, blocks, lot_line) * sun_vis
        light += (weather.sun * lit)[:, None].astype(np.float32) * np.array([1.0, 0.96, 0.88], np.float32)
    if weather.night:
        if len(lights):
            light += lamp_light(points, normals, lights, camera)
        light += headlights(points, normals, camera, view_axis)
    out = albedo * light + surf.emission
    if wet.any():
        # a wet road mirrors the sky near grazing angles (Schlick-like Fresnel)
        cos_v = np.abs(view[wet, 2])
        fres = 0.04 + 0.5 * (1 - cos_v) ** 5
        out[wet] += fres[:, None] * np.asarray(weather.horizon, np.float32)
    return out


def atmosphere(rad: np.ndarray, distance: np.ndarray, weather: Weather) -> np.ndarray:
    """Blend towards the haze colour with distance (aerial perspective; thick fog at low visibility)."""
    keep = np.exp(-distance / weather.visibility)[:, None].astype(np.float32)
    return rad * keep + (1 - keep) * np.asarray(weather.haze, np.float32)
