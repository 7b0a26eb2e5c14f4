"""Scripted content faults, e.g. "depth:frozen:8-14,lidar:sparse:20-26" (sensor:fault:start-end, seconds
from start, half-open): the sensor keeps publishing with fresh stamps, but its content lies.

The counterpart of `charm_ros.runtime.dropouts` (a silent sensor) for a sensor that lies. Faults act on
converted arrays (what `Pipeline.accept` returns: HxWx3 uint8 rgb/event, HxW float32 depth in metres
or a single-channel camera in physical units, Nx4 float32 LiDAR points), so the sim rig (before it
publishes), `charm-bag-eval` (after conversion) and the fault benchmark inject the same faults.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from charm_core.modalities import MODALITIES

STALE_S = 2.0      # frozen_old repeats the frame from this long before the fault starts
DEPTH_MAX_M = 60.0  # saturated depth: every pixel at the synthetic depth camera's range limit

# fault -> what it does (the sensors it applies to are in SUPPORTED)
FAULTS: dict[str, str] = {
    "frozen": "the frame at the fault's start, repeated",
    "frozen_old": f"the frame from {STALE_S:g} s before the fault's start, repeated (a stale buffer)",
    "frozen_jitter": "the frame at the fault's start, repeated with a little fresh noise (a stuck driver)",
    "saturated": "every pixel at full scale (depth: at the range limit; event: events everywhere)",
    "black": "every pixel 0 (a blinded or capped camera)",
    "flat": "every pixel at the frame's mean (a thermal camera's closed shutter)",
    "noise": "heavy noise over the content",
    "covered": "the left half covered (dark / no return)",
    "sparse": "1% of the points kept (returns collapsed)",
}
_IMAGES = ("frozen", "frozen_old", "frozen_jitter", "saturated", "black", "flat", "noise", "covered")
SUPPORTED: dict[str, tuple[str, ...]] = {
    "rgb": _IMAGES, "event": _IMAGES, "depth": _IMAGES,
    "lidar": ("frozen", "frozen_old", "frozen_jitter", "noise", "covered", "sparse"),
}


def supported(sensor: str) -> tuple[str, ...]:
    """Faults a sensor can take: single-channel cameras (thermal) take the image faults."""
    return SUPPORTED.get(sensor, _IMAGES)


@dataclass(frozen=True)
class Fault:
    sensor: str
    kind: str
    start: float
    end: float

    def covers(self, t: float) -> bool:
        return self.start <= t < self.end

    @property
    def name(self) -> str:
        return f"{self.sensor}:{self.kind}"


def parse_faults(text: str, modalities: Iterable[str] = MODALITIES) -> list[Fault]:
    """Parse 'sensor:fault:start-end,...' for sensors among `modalities`. Empty text = no faults."""
    modalities = tuple(modalities)
    out: list[Fault] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        parts = [p.strip() for p in item.split(":")]
        if len(parts) != 3 or "-" not in parts[2]:
            raise ValueError(f"fault {item!r} is not 'sensor:fault:start-end'")
        sensor, kind, span = parts
        start_text, _, end_text = span.partition("-")
        try:
            start, end = float(start_text), float(end_text)
        except ValueError:
            raise ValueError(f"fault {item!r}: start and end must be seconds") from None
        if not 0 <= start < end:
            raise ValueError(f"fault {item!r}: need 0 <= start < end")
        if sensor not in modalities:
            raise ValueError(f"fault {item!r}: unknown sensor {sensor!r} (one of {', '.join(modalities)})")
        if kind not in supported(sensor):
            raise ValueError(f"fault {item!r}: {sensor} takes {', '.join(supported(sensor))}, not {kind!r}")
        out.append(Fault(sensor, kind, start, end))
    return out


def faulted_at(faults: list[Fault], t: float) -> dict[str, Fault]:
    """sensor -> the fault acting on it at t (the first listed when several overlap)."""
    out: dict[str, Fault] = {}
    for f in faults:
        if f.covers(t):
            out.setdefault(f.sensor, f)
    return out


class FaultInjector:
    """Applies a fault schedule to one stream of samples per sensor (remembers the frames that frozen
    faults repeat). Deterministic for a seed."""

    def __init__(self, faults: list[Fault], seed: int = 0) -> None:
        self.faults = faults
        self.rng = np.random.default_rng(seed)
        sensors = {f.sensor for f in faults}
        self.history: dict[str, deque] = {s: deque() for s in sensors if self._needs_history(s)}
        self.held: dict[Fault, np.ndarray] = {}

    def _needs_history(self, sensor: str) -> bool:
        return any(f.sensor == sensor and f.kind == "frozen_old" for f in self.faults)

    def apply(self, sensor: str, array: np.ndarray, t: float) -> np.ndarray:
        """The sample as the faulty sensor reports it at t (seconds from the schedule's start); the
        input itself is never changed."""
        history = self.history.get(sensor)
        if history is not None:
            history.append((t, array))
            while history and history[0][0] < t - STALE_S - 1.0:
                history.popleft()
        fault = faulted_at(self.faults, t).get(sensor)
        if fault is None:
            return array
        if fault.kind.startswith("frozen"):
            held = self.held.get(fault)
            if held is None:
                held = self.held[fault] = array if fault.kind != "frozen_old" else self._stale(sensor, fault, array)
            return held if fault.kind != "frozen_jitter" else jitter(sensor, held, self.rng)
        return corrupt(sensor, fault.kind, array, self.rng)

    def _stale(self, sensor: str, fault: Fault, array: np.ndarray) -> np.ndarray:
        """The frame nearest STALE_S before the fault's start (the oldest kept, if the stream is younger)."""
        target = fault.start - STALE_S
        history = self.history.get(sensor) or deque([(fault.start, array)])
        return min(history, key=lambda item: abs(item[0] - target))[1]


def jitter(sensor: str, array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A little fresh noise, about a real sensor's own: 2 levels (8-bit), 0.5% of depth, 2 cm per point."""
    if sensor == "lidar":
        out = array.copy()
        out[:, :3] += rng.normal(0.0, 0.02, (len(out), 3)).astype(np.float32)
        return out
    if array.dtype == np.uint8:
        return np.clip(array + rng.normal(0.0, 2.0, array.shape), 0, 255).astype(np.uint8)
    if sensor == "depth":
        return (array * (1.0 + rng.normal(0.0, 0.005, array.shape))).astype(np.float32)
    return (array + rng.normal(0.0, 0.05, array.shape)).astype(array.dtype)


def corrupt(sensor: str, kind: str, array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A single-frame fault (no memory): saturated, black, flat, noise, covered, sparse."""
    if sensor == "lidar":
        if kind == "sparse":
            return array[rng.random(len(array)) < 0.01]
        if kind == "covered":
            return array[array[:, 1] < 0]  # one side of the scanner blocked
        out = array.copy()  # noise
        out[:, :3] += rng.normal(0.0, 0.5, (len(out), 3)).astype(np.float32)
        return out
    if kind == "covered":
        out = array.copy()
        out[:, : array.shape[1] // 2] = 0 if sensor == "depth" or array.dtype == np.uint8 else array.min()
        return out
    if kind == "black":
        return np.zeros_like(array)
    if kind == "flat":
        return np.full_like(array, array.mean())
    if kind == "saturated":
        full = DEPTH_MAX_M if sensor == "depth" else 255 if array.dtype == np.uint8 else array.max()
        return np.full_like(array, full)
    if sensor == "depth":  # noise: 30% multiplicative on valid pixels
        return np.where(array > 0, array * np.abs(1.0 + rng.normal(0.0, 0.3, array.shape)), 0).astype(np.float32)
    if array.dtype == np.uint8:
        return np.clip(array + rng.normal(0.0, 40.0, array.shape), 0, 255).astype(np.uint8)
    return (array + rng.normal(0.0, 3.0, array.shape)).astype(array.dtype)
