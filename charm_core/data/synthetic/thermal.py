"""Thermal (LWIR) camera: the radiometric temperature of what the RGB camera's rays hit.

An LWIR camera measures emitted heat, not reflected light, so it is blind to paint and colour (road
lines nearly vanish), works at night, and sees much farther through fog than a visible camera. A
surface's temperature (Kelvin) here is the air temperature of the condition plus
- solar heating: sun-facing, unshadowed surfaces, by class (asphalt most, vegetation least, which
  transpires), a little more for dark ones; overcast days heat a little through diffuse light;
- stored heat at night (road, walls, pavements stay warmer than the air);
- sources: people (skin ~306 K, clothing between skin and air), moving vehicles (engine front,
  tyres; parked ones are at air temperature), lamp heads and lit windows at night;
seen through an emissivity (glass and bare metal mirror the cold sky) and the atmosphere (fog
pulls towards the air temperature, over a distance five times the visible range). Rain wets
surfaces, which evaporation keeps near the air temperature.

The sensor: half the RGB camera's resolution (rendered from the same cast, averaged down), slight
optical blur, a fixed column pattern per camera and temporal noise (NETD), upsampled back to the
camera's size so the folders stay pixel-aligned.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from charm_core.classes import CLASS_ID
from charm_core.data.synthetic.conditions import Weather
from charm_core.data.synthetic.materials import CAR_BWD, CAR_FWD, CLOTH, FACADE, GLASS, LAMP, METAL, RUBBER, Surface
from charm_core.data.synthetic.primitives import Primitives

AIR_K = {"sun": 298.0, "cloud": 290.0, "fog": 284.0, "rain": 286.0, "night": 283.0}
SKY_DROP_K = {"sun": 45.0, "cloud": 12.0, "fog": 3.0, "rain": 8.0, "night": 50.0}   # zenith below the air
DIFFUSE_HEAT = {"sun": 0.15, "cloud": 0.3, "fog": 0.15, "rain": 0.1, "night": 0.0}   # of full-sun heating
FULL_SUN = 2.6                 # Weather.sun of a clear day
LWIR_RANGE_GAIN = 5.0          # extinction distance, LWIR over visible
SKIN_K = 306.0
NATIVE_DOWNSCALE = 2
NETD_K = 0.05                  # temporal noise (std)
COLUMN_FPN_K = 0.12            # fixed column offsets (std)

# class -> (solar heating at full sun K, heat stored at night K, emissivity)
_CLASS_HEAT = {"Road": (18.0, 3.0, 0.95), "RoadLine": (18.0, 3.0, 0.95), "SideWalk": (13.0, 2.0, 0.95),
               "Building": (9.0, 2.0, 0.93), "Wall": (10.0, 2.0, 0.93), "Fence": (7.0, 0.5, 0.92),
               "Terrain": (7.0, 0.5, 0.96), "Ground": (8.0, 1.0, 0.95), "Vegetation": (2.0, -1.0, 0.98),
               "Pole": (7.0, 0.5, 0.9), "TrafficSign": (6.0, 0.0, 0.85), "TrafficLight": (6.0, 0.5, 0.9),
               "Cars": (9.0, 0.0, 0.9), "Truck": (8.0, 0.0, 0.9), "Bus": (8.0, 0.0, 0.9),
               "TwoWheeler": (6.0, 0.0, 0.9), "Pedestrian": (2.0, 0.0, 0.98)}
_DEFAULT_HEAT = (7.0, 0.5, 0.92)
_TABLE = np.array([_CLASS_HEAT.get(name, _DEFAULT_HEAT) for name in sorted(CLASS_ID, key=CLASS_ID.get)], np.float32)
_EMISSIVITY = {GLASS: 0.75, METAL: 0.5}


@dataclass
class SurfaceSample:
    """The camera's hit points with what the thermal model needs, kept from the camera render."""

    normals: np.ndarray       # (N, 3)
    distance: np.ndarray      # (N,) metres along the ray
    prim: np.ndarray          # (N,) prim index (GROUND for the ground plane)
    prims: Primitives
    surf: Surface
    sun_vis: np.ndarray       # (N,) 1 where sunlit (buildings and objects), 0 in shadow


def sky_temperature(dirs: np.ndarray, condition: str) -> np.ndarray:
    """Brightness temperature (N,) of the sky along world directions: cold overhead, air at the horizon."""
    up = np.clip(dirs[:, 2] / np.linalg.norm(dirs, axis=1), 0.0, 1.0)
    return (AIR_K[condition] - SKY_DROP_K[condition] * np.sqrt(up)).astype(np.float32)


def surface_temperature(s: SurfaceSample, weather: Weather, condition: str, sun_dir: np.ndarray) -> np.ndarray:
    """Apparent temperature (N,) of the hit points, before the atmosphere."""
    air = AIR_K[condition]
    cls = s.surf.cls.astype(np.int64)
    gain, stored, eps = (_TABLE[np.minimum(cls, len(_TABLE) - 1), i] for i in range(3))
    solid = s.prim >= 0
    idx = np.where(solid, s.prim, 0)
    material = np.where(solid, s.prims.material[idx], 255)
    moving = solid & (np.abs(s.prims.velocity[idx]) > 0.5)
    up = s.normals[:, 2]
    load = DIFFUSE_HEAT[condition] * (0.5 + 0.5 * np.clip(up, 0.0, 1.0))
    if weather.sun > 0:
        load = load + weather.sun / FULL_SUN * np.clip(s.normals @ sun_dir, 0.0, None) * s.sun_vis
    brightness = s.surf.albedo @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    absorbed = 1.0 - 0.15 * np.clip(brightness, 0.0, 1.0)   # paint barely differs from asphalt in LWIR
    t = air + gain * load * absorbed + (stored if weather.night else 0.0)
    people = cls == CLASS_ID["Pedestrian"]
    t = np.where(people, np.where(material == CLOTH, 0.55 * SKIN_K + 0.45 * air, SKIN_K), t)
    forward = np.where(material == CAR_FWD, 1.0, -1.0)
    engine = moving & np.isin(material, (CAR_FWD, CAR_BWD)) & (s.normals[:, 0] * forward > 0.5)
    tyre = moving & (material == RUBBER)
    body = moving & ~engine & ~tyre & np.isin(cls, [CLASS_ID[c] for c in ("Cars", "Truck", "Bus")])
    t = t + np.where(engine, 22.0, 0.0) + np.where(tyre, 14.0, 0.0) + np.where(body, 2.0, 0.0)
    if weather.night:
        glowing = s.surf.emission.max(axis=1) > 0
        t = t + np.where(glowing & (material == LAMP), 45.0, 0.0) + np.where(glowing & (material == FACADE), 4.0, 0.0)
        t = t + np.where(glowing & np.isin(material, (CAR_FWD, CAR_BWD)), 15.0, 0.0)
    if weather.rain > 0:
        wet = s.surf.wet | (up > 0.5)
        t = np.where(wet, air - 0.5 + 0.4 * (t - air), t)
    for mat, e in _EMISSIVITY.items():
        eps = np.where(material == mat, np.minimum(eps, e), eps)
    reflected = air - 0.6 * SKY_DROP_K[condition]
    return (eps * t + (1.0 - eps) * reflected).astype(np.float32)


def through_atmosphere(kelvin: np.ndarray, distance: np.ndarray, weather: Weather, condition: str) -> np.ndarray:
    """Blend towards the air temperature with distance; LWIR reaches LWIR_RANGE_GAIN x farther than light."""
    keep = np.exp(-distance / (LWIR_RANGE_GAIN * weather.visibility)).astype(np.float32)
    return kelvin * keep + (1.0 - keep) * np.float32(AIR_K[condition])


def column_pattern(seed: int, width: int) -> np.ndarray:
    """The fixed column offsets (K) of one thermal camera at native resolution."""
    return (COLUMN_FPN_K * np.random.default_rng([seed, 6]).standard_normal(max(1, width // NATIVE_DOWNSCALE))
            ).astype(np.float32)


def sensor_image(kelvin: np.ndarray, columns: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scene temperature (H, W) at camera size -> what the thermal camera reports, in Kelvin (float32)."""
    h, w = kelvin.shape
    low = cv2.resize(kelvin, (max(1, w // NATIVE_DOWNSCALE), max(1, h // NATIVE_DOWNSCALE)),
                     interpolation=cv2.INTER_AREA)
    low = cv2.GaussianBlur(low, (0, 0), 0.6)
    low = low + columns[None, : low.shape[1]] + NETD_K * rng.standard_normal(low.shape, dtype=np.float32)
    return cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)


def centikelvin(kelvin: np.ndarray) -> np.ndarray:
    """Kelvin -> uint16 centi-Kelvin, the mono16 encoding of common radiometric drivers (0..655.35 K)."""
    return np.clip(np.rint(np.asarray(kelvin, np.float64) * 100.0), 0, 65535).astype(np.uint16)
