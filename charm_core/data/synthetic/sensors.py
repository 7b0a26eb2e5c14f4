"""Sensor models: how radiance and geometry become RGB, depth, LiDAR and event measurements.

Each model has its own strengths and failure modes (DESIGN.md §7): the camera sees colour and texture
but loses contrast at night and clips when over-exposed; the depth camera sees geometry only and
gets noisy with range; the LiDAR is sparse, sees retro-reflective paint and loses returns in rain and
fog; the event camera sees only brightness changes.
"""
from __future__ import annotations

import cv2
import numpy as np

from charm_core.data.synthetic.conditions import Failure, Weather

DEPTH_MAX_M = 60.0           # 16-bit millimetre PNGs top out at 65.5 m
EVENT_THRESHOLD = 0.2        # log-intensity step per event
EVENT_LOG_EPS = 0.01         # dark-current floor: dim scenes fire fewer events
MAX_EVENTS = 15
LIDAR_MIN_ECHO = 1e-5        # a 10 % target at normal incidence is seen out to 100 m in clear air


def rain_streaks(hw: tuple[int, int], rng: np.random.Generator, amount: float) -> np.ndarray:
    """(H, W) additive radiance of falling rain drops, smeared along their fall during the exposure."""
    h, w = hw
    hit = rng.random((h, w), dtype=np.float32) < 0.004 * amount
    drops = hit * (0.2 + 0.3 * rng.random((h, w), dtype=np.float32))
    length = max(3, int(round(0.06 * h)))
    kernel = np.zeros((length, length), np.float32)
    slope = 0.25
    for i in range(length):
        kernel[i, int(round((length - 1) / 2 + slope * (i - (length - 1) / 2)))] = 1.0 / length
    return cv2.filter2D(drops, -1, kernel, borderType=cv2.BORDER_CONSTANT)


def camera_image(rad: np.ndarray, weather: Weather, failure: Failure, rng: np.random.Generator) -> np.ndarray:
    """Linear radiance (H, W, 3) -> uint8 RGB: exposure, optional motion blur, tone curve, noise."""
    w = rad.shape[1]
    x = rad * (weather.exposure * failure.gain)
    if failure.blur_px > 0:
        length = max(3, int(round(failure.blur_px * w / 256)))
        angle = rng.uniform(0, np.pi)
        kernel = np.zeros((length, length), np.float32)
        c = (length - 1) / 2
        for i in np.linspace(-c, c, 2 * length):
            kernel[int(round(c + i * np.sin(angle))), int(round(c + i * np.cos(angle)))] = 1.0
        x = cv2.filter2D(x, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)
    x = np.maximum(x, 0.0)
    x = np.clip(x * (1.0 + x / 6.0) / (1.0 + x), 0.0, 1.0)   # soft shoulder, white at ~2.4
    v = 255.0 * np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)   # sRGB transfer curve
    sigma = np.sqrt(weather.read_noise ** 2 + 0.25 * v)                  # read + shot noise
    v = v + sigma * rng.standard_normal(v.shape, dtype=np.float32)
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)


def depth_image(z: np.ndarray, hit: np.ndarray, weather: Weather, rng: np.random.Generator) -> np.ndarray:
    """Ray depth (H, W) -> depth camera output in metres (0 = no measurement), millimetre-quantized.

    Noise grows with range (stereo-like), occlusion edges drop out, fog shortens the usable range.
    The random draws do not depend on the condition, so a day and a night frame measure the same.
    """
    noise = rng.standard_normal(z.shape, dtype=np.float32)
    drop = rng.random(z.shape, dtype=np.float32)
    zz = np.where(hit, z, 0.0).astype(np.float64)
    max_range = min(DEPTH_MAX_M, 1.5 * weather.visibility)
    valid = hit & (zz > 0.2) & (zz <= max_range)
    d = zz + (0.002 * zz + 0.0005 * zz ** 2) * noise
    zp = np.pad(zz, 1, mode="edge")
    ratio = np.ones_like(zz)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        nb = zp[dy:dy + z.shape[0], dx:dx + z.shape[1]]
        ratio = np.maximum(ratio, np.maximum(nb, 1e-3) / np.maximum(zz, 1e-3))
        ratio = np.maximum(ratio, np.maximum(zz, 1e-3) / np.maximum(nb, 1e-3))
    valid &= ~((ratio > 1.15) & (drop < 0.5))
    d = np.where(valid & (d > 0), np.rint(d * 1000.0) / 1000.0, 0.0)
    return np.minimum(d, DEPTH_MAX_M).astype(np.float32)


def lidar_returns(ranges: np.ndarray, hit: np.ndarray, reflectivity: np.ndarray, cos_incidence: np.ndarray,
                  local_dirs: np.ndarray, weather: Weather, failure: Failure, max_range: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Ranges of a (rings, azimuths) scan -> Nx4 float32 (x, y, z, intensity 0..1) in the LiDAR frame.

    All random draws happen in a fixed order with fixed shapes, so conditions that do not affect the
    LiDAR (night) give bit-identical clouds.
    """
    shape = ranges.shape
    f32 = np.float32
    u_drop = rng.random(shape, dtype=f32)
    n_range = rng.standard_normal(shape, dtype=f32)
    n_int = rng.standard_normal(shape, dtype=f32)
    u_spur = rng.random(shape, dtype=f32)
    r_spur = rng.random(shape, dtype=f32)
    jitter = rng.standard_normal(shape + (3,), dtype=f32)
    r = np.where(hit, ranges, 0.0).astype(np.float64)
    echo = reflectivity * (0.25 + 0.75 * cos_incidence) * (1.0 - 0.35 * weather.rain)
    two_way = np.exp(-2.0 * r / weather.visibility)
    detectable = echo * two_way / np.maximum(r, 1.0) ** 2 > LIDAR_MIN_ECHO
    intensity = np.clip(echo * np.sqrt(two_way) + 0.015 * n_int, 0.0, 1.0)
    valid = hit & (r > 0.5) & (r <= max_range) & detectable & (u_drop >= 0.01 + 0.12 * weather.rain)
    r = r + 0.015 * n_range
    # rain drops and fog droplets return light close to the sensor
    p_spur = 0.004 * weather.rain + 0.02 * np.clip(40.0 / weather.visibility - 0.3, 0.0, 1.0)
    spur = u_spur < p_spur
    r = np.where(spur, 1.0 + 12.0 * r_spur, r)
    intensity = np.where(spur, 0.03 + 0.05 * r_spur, intensity)
    valid |= spur
    pts = r[..., None] * local_dirs + failure.lidar_jitter_m * jitter
    out = np.concatenate([pts, intensity[..., None]], axis=-1)[valid]
    return out.astype(np.float32)


def log_luminance(rad: np.ndarray, downscale: int = 1) -> np.ndarray:
    """Per-pixel log intensity as an event pixel senses it (optionally at a lower resolution)."""
    y = 0.2126 * rad[..., 0] + 0.7152 * rad[..., 1] + 0.0722 * rad[..., 2]
    if downscale > 1:
        h, w = y.shape
        y = cv2.resize(y, (max(1, w // downscale), max(1, h // downscale)), interpolation=cv2.INTER_AREA)
    return np.log(y + EVENT_LOG_EPS)


def event_counts(prev_log: np.ndarray, log: np.ndarray, threshold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive / negative event counts for a log-intensity change (no change -> no events)."""
    steps = np.trunc((log - prev_log) / threshold)
    pos = np.clip(steps, 0, MAX_EVENTS).astype(np.int32)
    neg = np.clip(-steps, 0, MAX_EVENTS).astype(np.int32)
    return pos, neg
