"""Weather/light conditions and sensor-failure cases, as in DELIVER (cloud/fog/night/rain/sun and
motionblur/overexposure/underexposure/lidarjitter/eventlowres).

A condition changes light and atmosphere for every sensor the way physics does: night darkens the
camera but not depth or LiDAR; fog and rain scatter light and LiDAR pulses. A case breaks one sensor.
"""
from __future__ import annotations

from dataclasses import dataclass

CONDITIONS: tuple[str, ...] = ("cloud", "fog", "night", "rain", "sun")
CASES: tuple[str, ...] = ("motionblur", "overexposure", "underexposure", "lidarjitter", "eventlowres")

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Weather:
    sun: float                 # direct sunlight (0 when overcast or at night)
    ambient: RGB               # sky light on an upward-facing surface
    zenith: RGB                # sky radiance overhead
    horizon: RGB               # sky radiance at the horizon
    clouds: float              # 0..1 cloud texture in the sky
    visibility: float          # m; light decays as exp(-distance / visibility)
    haze: RGB                  # colour that distant things fade into
    exposure: float            # camera gain (a fixed auto-exposure per condition)
    read_noise: float          # camera read noise, 8-bit units
    night: bool                # lamps, lit windows and headlights on
    rain: float                # 0..1: streaks, wet glossy ground, LiDAR dropouts and spurious returns


WEATHER: dict[str, Weather] = {
    "sun": Weather(sun=2.6, ambient=(0.3, 0.34, 0.42), zenith=(0.22, 0.38, 0.8), horizon=(0.62, 0.72, 0.88),
                   clouds=0.15, visibility=1500.0, haze=(0.6, 0.68, 0.8), exposure=0.85, read_noise=1.2,
                   night=False, rain=0.0),
    "cloud": Weather(sun=0.0, ambient=(0.95, 0.97, 1.0), zenith=(0.62, 0.64, 0.68), horizon=(0.85, 0.86, 0.88),
                     clouds=0.9, visibility=700.0, haze=(0.8, 0.81, 0.83), exposure=1.0, read_noise=1.5,
                     night=False, rain=0.0),
    "fog": Weather(sun=0.0, ambient=(0.75, 0.77, 0.8), zenith=(0.72, 0.73, 0.75), horizon=(0.72, 0.73, 0.75),
                   clouds=0.0, visibility=30.0, haze=(0.68, 0.69, 0.71), exposure=1.0, read_noise=1.5,
                   night=False, rain=0.0),
    "night": Weather(sun=0.0, ambient=(0.004, 0.005, 0.009), zenith=(0.002, 0.003, 0.008),
                     horizon=(0.012, 0.011, 0.014), clouds=0.0, visibility=1500.0, haze=(0.01, 0.01, 0.012),
                     exposure=1.0, read_noise=3.5, night=True, rain=0.0),
    "rain": Weather(sun=0.0, ambient=(0.42, 0.44, 0.48), zenith=(0.34, 0.35, 0.38), horizon=(0.48, 0.49, 0.52),
                    clouds=0.6, visibility=120.0, haze=(0.44, 0.45, 0.48), exposure=1.35, read_noise=2.0,
                    night=False, rain=1.0),
}


@dataclass(frozen=True)
class Failure:
    """Sensor-failure parameters; the neutral values mean a healthy rig."""

    blur_px: float = 0.0           # camera motion-blur length at 256 px width
    gain: float = 1.0              # camera exposure multiplier
    lidar_jitter_m: float = 0.0    # std of LiDAR point position noise
    event_downscale: int = 1       # event sensor resolution divisor


FAILURES: dict[str | None, Failure] = {
    None: Failure(),
    "motionblur": Failure(blur_px=20.0),
    "overexposure": Failure(gain=10.0),
    "underexposure": Failure(gain=0.04),
    "lidarjitter": Failure(lidar_jitter_m=0.2),
    "eventlowres": Failure(event_downscale=4),
}


def check_condition(condition: str, case: str | None) -> None:
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; expected one of {CONDITIONS}")
    if case is not None and case not in CASES:
        raise ValueError(f"unknown case {case!r}; expected None or one of {CASES}")
