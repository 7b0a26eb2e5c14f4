"""Sensor content health: well-formed messages whose content lies (frozen, blinded, saturated, collapsed).

ROS-free and numpy only, so the node, `charm-bag-eval` and the fault benchmark share one implementation.
Each sensor's converted array (what `Pipeline.accept` returns) is reduced to a few block statistics;
single-frame checks look at them (blinded / covered images, depth saturated at its range limit or
noisy, event frames saturated, thermal flat fields) and history checks compare them with the sensor's
own recent frames (frozen content, depth valid-fraction and LiDAR return collapse).

Frozen is judged across sensors: a sensor is frozen only while it does not change and another live
sensor does, so a scene static for every sensor (a parked robot) is no fault. "Does not change" is
relative to the sensor's own typical frame-to-frame change while the platform moves, so a stuck
driver that adds jitter is still frozen. A monitor turns per-frame findings into a state with
hysteresis, and the policy (`EXCLUDED_FAULTS`, chosen from the fault benchmark's measurements:
docs/sensor_health.md) says which faults leave the sensor out and which are only reported.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from charm_ros.runtime.parameters import ParamSpec

GRID = 16            # blocks per image side
BLOCK_SAMPLES = 16   # pixels per block side after subsampling (bounds the cost at any resolution)
LIDAR_SECTORS = 64   # azimuth sectors of the LiDAR signature
LIDAR_RINGS = 8      # elevation bands of 1/8 rad (every point counts: a subsample would shift with dropouts)
# Sensors whose frame-to-frame change is measured relative to their activity (mean level): an event
# frame's change grows with its number of events, which legitimately falls (fog, a quiet stretch), so an
# absolute change compared with the typical one of a busier stretch looked frozen (docs/sensor_health.md).
ACTIVITY_RELATIVE = ("event",)

# fault kind -> the sensors it leaves out (when `health.exclude` is on), by role: DELIVER's four by name,
# "camera" for every further single-channel camera (thermal, NIR, ...: any name, checked as thermal is);
# other findings are reported only, since keeping such a sensor did not cost CHARM accuracy on the fault
# benchmark.
EXCLUDED_FAULTS: dict[str, tuple[str, ...]] = {
    "frozen": ("rgb", "depth", "event", "lidar", "camera"),
    "saturated": ("depth", "event"),
    "noisy": ("depth",),
    "collapsed": ("lidar",),   # a collapsed (half-covered) depth still helped CHARM: 36.1 kept, 35.1 without
    "blinded": ("rgb",),       # a black or white rgb cost 0.5-1.2 mIoU kept against leaving it out
    "flat": ("camera",),
}


def role(sensor: str) -> str:
    """The sensor's row in EXCLUDED_FAULTS: its name for DELIVER's four, "camera" for a further camera."""
    return sensor if sensor in ("rgb", "depth", "event", "lidar") else "camera"


@dataclass(frozen=True)
class HealthConfig:
    """Thresholds of the checks (parameters `health.<name>`, see HEALTH_PARAMETERS)."""

    exclude: bool = True              # False: detect and report only
    enter_frames: int = 2             # consecutive faulty frames before a sensor is faulted
    leave_frames: int = 3             # consecutive healthy frames before it is healthy again
    still_ratio: float = 0.25         # change below this x the sensor's typical change = unchanged
    moving_ratio: float = 0.4         # another sensor changing by this x its typical change = the platform moves
    history: int = 50                 # frames of a sensor's own history (typical change, valid fraction, returns)
    flat_std: float = 0.6             # block standard deviation (8-bit levels) below which an image block is flat
    dark_level: float = 12.0          # a flat block darker than this is black
    blinded_fraction: float = 0.9     # flat blocks over this fraction: blinded (black, white, fully covered)
    covered_fraction: float = 0.35    # flat dark blocks over this fraction: partly covered
    depth_saturated_fraction: float = 0.5   # valid depth pixels at the frame's maximum over this: saturated
    depth_noise: float = 0.08         # median relative difference of neighbouring depth pixels over this: noisy
    depth_collapse: float = 0.6       # valid fraction below this x its recent median: collapsed
    lidar_collapse: float = 0.25      # returns below this x the recent median: collapsed
    event_saturated_fraction: float = 0.5   # pixels with events over this fraction: saturated
    thermal_flat_k: float = 0.3       # spread (K) of a thermal image's block means below this: flat field

    @classmethod
    def from_params(cls, values: dict[str, Any]) -> HealthConfig:
        """From parameter values `health.<field>` (missing ones keep their defaults)."""
        return cls(**{f.name: values[f"health.{f.name}"] for f in fields(cls) if f"health.{f.name}" in values})


_DEFAULT = HealthConfig()
HEALTH_PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("health.exclude", True, "leave a sensor out of the subset while its content is faulted in a way "
              "that hurts CHARM (frozen; depth saturated or noisy; LiDAR collapsed; rgb blinded; event saturated; "
              "thermal flat); false = detect and report on /diagnostics only", dynamic=True),
    ParamSpec("health.enter_frames", _DEFAULT.enter_frames, "consecutive faulty frames before a sensor counts as "
              "faulted", dynamic=True, minimum=1, maximum=100),
    ParamSpec("health.leave_frames", _DEFAULT.leave_frames, "consecutive healthy frames before a faulted sensor "
              "counts as healthy again", dynamic=True, minimum=1, maximum=100),
    ParamSpec("health.still_ratio", _DEFAULT.still_ratio, "frozen: a frame changed by less than this fraction of "
              "the sensor's typical frame-to-frame change counts as unchanged", dynamic=True, minimum=0.0,
              maximum=1.0),
    ParamSpec("health.moving_ratio", _DEFAULT.moving_ratio, "frozen: an unchanged sensor is frozen only while "
              "another sensor changes by at least this fraction of its typical change (all static = parked)",
              dynamic=True, minimum=0.0, maximum=10.0),
    ParamSpec("health.history", _DEFAULT.history, "frames of a sensor's own history the relative checks compare "
              "with (typical change, depth valid fraction, LiDAR returns)", minimum=5, maximum=1000),
    ParamSpec("health.flat_std", _DEFAULT.flat_std, "image blocks whose standard deviation (8-bit levels) is "
              "below this are flat", dynamic=True, minimum=0.0, maximum=50.0),
    ParamSpec("health.dark_level", _DEFAULT.dark_level, "flat blocks darker than this (8-bit level) are black",
              dynamic=True, minimum=0.0, maximum=255.0),
    ParamSpec("health.blinded_fraction", _DEFAULT.blinded_fraction, "an image with more flat blocks than this "
              "fraction is blinded (black, white, fully covered)", dynamic=True, minimum=0.0, maximum=1.0),
    ParamSpec("health.covered_fraction", _DEFAULT.covered_fraction, "an image with more flat dark blocks than "
              "this fraction is partly covered", dynamic=True, minimum=0.0, maximum=1.0),
    ParamSpec("health.depth_saturated_fraction", _DEFAULT.depth_saturated_fraction, "depth with more of its "
              "valid pixels at the frame's maximum than this fraction is saturated", dynamic=True, minimum=0.0,
              maximum=1.0),
    ParamSpec("health.depth_noise", _DEFAULT.depth_noise, "depth whose median relative difference between "
              "neighbouring pixels exceeds this is noisy", dynamic=True, minimum=0.0, maximum=10.0),
    ParamSpec("health.depth_collapse", _DEFAULT.depth_collapse, "depth whose valid fraction falls below this "
              "fraction of its recent median has collapsed (covered, blinded)", dynamic=True, minimum=0.0,
              maximum=1.0),
    ParamSpec("health.lidar_collapse", _DEFAULT.lidar_collapse, "a cloud with fewer returns than this fraction "
              "of the recent median has collapsed", dynamic=True, minimum=0.0, maximum=1.0),
    ParamSpec("health.event_saturated_fraction", _DEFAULT.event_saturated_fraction, "an event frame with "
              "events at more than this fraction of its pixels is saturated", dynamic=True, minimum=0.0,
              maximum=1.0),
    ParamSpec("health.thermal_flat_k", _DEFAULT.thermal_flat_k, "a thermal image whose block means spread less "
              "than this (K) is a flat field", dynamic=True, minimum=0.0, maximum=100.0),
)


@dataclass(frozen=True)
class Finding:
    """One frame's verdict on one sensor: `kind` "" when healthy; `measure` says what was seen."""

    kind: str = ""
    measure: str = ""


@dataclass
class Signature:
    """A frame reduced to what the checks compare: block means (images) or sector ranges (LiDAR)."""

    values: np.ndarray
    count: float = 0.0   # valid fraction (depth) or returns (LiDAR)


def _blocks(image: np.ndarray, samples: int = BLOCK_SAMPLES) -> np.ndarray:
    """An HxW image subsampled and cut into GRID x GRID blocks: (GRID, GRID, n) float32 samples."""
    h, w = image.shape[:2]
    step = max(1, min(h, w) // (GRID * samples))
    small = image[::step, ::step]
    bh, bw = small.shape[0] // GRID, small.shape[1] // GRID
    if bh == 0 or bw == 0:
        raise ValueError(f"image of {w}x{h} is too small for {GRID}x{GRID} blocks")
    small = small[:bh * GRID, :bw * GRID].astype(np.float32)
    return small.reshape(GRID, bh, GRID, bw).transpose(0, 2, 1, 3).reshape(GRID, GRID, bh * bw)


def _gray(array: np.ndarray) -> np.ndarray:
    """rgb / event HxWx3 -> HxW: rgb's green channel (close to luminance), event's total-events channel."""
    return array[:, :, 1] if array.ndim == 3 else array


def _lidar_signature(points: np.ndarray) -> Signature:
    """Mean log range per (azimuth sector, elevation band) of the cloud, and its number of returns; log
    range, so that a near point jittering across a sector edge moves a mean little."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    flat2 = x * x + y * y
    log_range = np.log(np.maximum(flat2 + z * z, 1e-6))  # 2 log(range)
    sector = ((np.arctan2(y, x) + np.pi) * (LIDAR_SECTORS / (2 * np.pi))).astype(np.int64)
    band = (z * LIDAR_RINGS / np.sqrt(np.maximum(flat2, 1e-6))).astype(np.int64) + LIDAR_RINGS // 2  # tan(elevation)
    cell = np.clip(sector, 0, LIDAR_SECTORS - 1) * LIDAR_RINGS + np.clip(band, 0, LIDAR_RINGS - 1)
    size = LIDAR_SECTORS * LIDAR_RINGS
    sums = np.bincount(cell, weights=log_range, minlength=size)
    return Signature(sums / np.maximum(np.bincount(cell, minlength=size), 1), float(len(points)))


def inspect(sensor: str, array: np.ndarray, config: HealthConfig) -> tuple[Signature, Finding]:
    """The frame's signature and what its single-frame checks find (history checks are the monitor's)."""
    if sensor == "lidar":
        return _lidar_signature(array), Finding()
    if sensor == "depth":
        return _inspect_depth(array, config)
    blocks = _blocks(_gray(array))
    signature = Signature(blocks.mean(axis=2))
    if sensor == "event":  # no events is a still scene, not a fault: only saturation is
        active = np.count_nonzero(blocks) / blocks.size
        if active > config.event_saturated_fraction:
            return signature, Finding("saturated", f"events at {active:.0%} of pixels")
        return signature, Finding()
    means = signature.values
    if sensor == "rgb":
        return signature, _image_finding(means, blocks.std(axis=2), config)
    spread = float(means.max() - means.min())  # a single-channel camera in physical units (thermal: K)
    if spread < config.thermal_flat_k:
        return signature, Finding("flat", f"flat field, block means within {spread:.2f}")
    return signature, Finding()


def _image_finding(means: np.ndarray, stds: np.ndarray, config: HealthConfig) -> Finding:
    """Blinded (almost all blocks flat) or covered (many flat dark blocks), in the spirit of Autoware's
    image_diagnostics (per-block mean and variance)."""
    flat = stds < config.flat_std
    flat_fraction = float(flat.mean())
    if flat_fraction > config.blinded_fraction:
        level = float(means[flat].mean())
        what = "black" if level < config.dark_level else "white" if level > 255 - config.dark_level else "uniform"
        return Finding("blinded", f"{what}, {flat_fraction:.0%} of blocks flat")
    covered = float((flat & (means < config.dark_level)).mean())
    if covered > config.covered_fraction:
        return Finding("covered", f"{covered:.0%} of blocks flat and dark")
    return Finding()


def _inspect_depth(depth: np.ndarray, config: HealthConfig) -> tuple[Signature, Finding]:
    blocks = _blocks(depth, samples=BLOCK_SAMPLES // 2)
    valid = blocks > 0
    valid_fraction = float(valid.mean())
    signature = Signature(blocks.mean(axis=2), valid_fraction)
    values = blocks[valid]
    if values.size == 0:
        return signature, Finding("collapsed", "no valid pixel")
    top = float(values.max())
    at_top = float((values >= top * 0.995).mean())
    if at_top > config.depth_saturated_fraction:
        return signature, Finding("saturated", f"{at_top:.0%} of valid pixels at {top:.1f} m")
    # roughness: neighbours along a row in the subsampled image, both valid
    left, right = blocks[:, :, :-1], blocks[:, :, 1:]
    pair = (left > 0) & (right > 0)
    if pair.any():
        rel = np.abs(left[pair] - right[pair]) / np.maximum(left[pair], right[pair])
        roughness = float(np.median(rel))
        if roughness > config.depth_noise:
            return signature, Finding("noisy", f"neighbouring pixels differ by {roughness:.0%} (median)")
    return signature, Finding()


@dataclass
class SensorState:
    """The monitor's memory of one sensor."""

    last: Signature | None = None
    last_stamp: float | None = None
    changes: deque = field(default_factory=deque)     # recent changes while not still (typical change)
    counts: deque = field(default_factory=deque)      # recent valid fractions / returns while healthy
    ratio: float | None = None                        # last change / typical change
    ratio_time: float = -np.inf                       # clock time of that change
    still_run: int = 0                                # consecutive unchanged frames
    still_since: float | None = None                  # stamp of the first frame of that run
    bad: int = 0                                      # consecutive faulty frames
    good: int = 0                                     # consecutive healthy frames
    fault: Finding = field(default_factory=Finding)   # the current fault ("" = healthy)
    last_finding: Finding = field(default_factory=Finding)


@dataclass(frozen=True)
class Verdict:
    """What the monitor says about a sensor after a frame: its fault ("" = healthy), whether it is left
    out, and whether this frame changed its state (entered or recovered: log it once)."""

    sensor: str
    fault: Finding
    excluded: bool
    changed: bool

    def text(self) -> str:
        """'depth: frozen, 14 identical frames over 1.4 s: left out' (or ': kept', or 'healthy')."""
        if not self.fault.kind:
            return f"{self.sensor}: content healthy"
        return (f"{self.sensor}: {self.fault.kind}, {self.fault.measure}: "
                f"{'left out' if self.excluded else 'kept (reported only)'}")


class ContentHealth:
    """Per-sensor content monitor with hysteresis over all of a node's sensors (one feeding thread)."""

    def __init__(self, config: HealthConfig = HealthConfig(), recent_s: float = 1.0) -> None:
        self.config = config
        self.recent_s = recent_s   # another sensor's change counts if measured within this long
        self.states: dict[str, SensorState] = {}

    def reset(self) -> None:
        """Forget every history (a clock jump back, a new recording)."""
        self.states.clear()

    def observe(self, sensor: str, array: np.ndarray, stamp: float, now: float | None = None) -> Verdict:
        """Check one converted sample of `sensor` stamped `stamp`, arriving at `now` (the driver's clock,
        default the stamp: sensors are compared by arrival, so one on another clock still counts)."""
        now = stamp if now is None else now
        config = self.config
        state = self.states.setdefault(sensor, SensorState())
        if state.last_stamp is not None and stamp < state.last_stamp:
            self.reset()
            state = self.states.setdefault(sensor, SensorState())
        signature, finding = inspect(sensor, array, config)
        change, still = self._update_change(sensor, state, signature, now)
        if not finding.kind:
            finding = self._history_finding(sensor, state, signature, still, stamp, now)
        if not finding.kind and not state.fault.kind:
            self._learn(state, signature, change, still)
        state.last, state.last_stamp, state.last_finding = signature, stamp, finding
        return self._hysteresis(sensor, state, finding, undecided=still is None)

    def excluded(self) -> tuple[str, ...]:
        """Sensors currently left out (none while `exclude` is off)."""
        return tuple(s for s, st in self.states.items() if self._excludes(s, st.fault))

    def verdict(self, sensor: str) -> Verdict | None:
        state = self.states.get(sensor)
        if state is None:
            return None
        return Verdict(sensor, state.fault, self._excludes(sensor, state.fault), False)

    # ------------------------------------------------------------------ internals
    def _excludes(self, sensor: str, fault: Finding) -> bool:
        return self.config.exclude and role(sensor) in EXCLUDED_FAULTS.get(fault.kind, ())

    def _update_change(self, sensor: str, state: SensorState, signature: Signature,
                       now: float) -> tuple[float | None, bool | None]:
        """The frame's change from the last one, and whether it is unchanged (None: no typical change
        known yet)."""
        if state.last is None or state.last.values.shape != signature.values.shape:
            return None, None
        change = float(np.abs(signature.values - state.last.values).mean())
        if sensor in ACTIVITY_RELATIVE:
            change /= max(0.5 * float(signature.values.mean() + state.last.values.mean()), 1e-3)
        typical = float(np.median(state.changes)) if len(state.changes) >= 3 else None
        ratio = None if typical is None else change / max(typical, 1e-9)
        still = None if ratio is None else ratio < self.config.still_ratio
        state.ratio, state.ratio_time = ratio, now
        if still:
            state.still_run += 1
            state.still_since = state.last_stamp if state.still_run == 1 else state.still_since
        else:
            state.still_run, state.still_since = 0, None
        return change, still

    def _learn(self, state: SensorState, signature: Signature, change: float | None, still: bool | None) -> None:
        """Add a healthy frame of a healthy sensor to its history: faulted frames (and the first ones
        after a fault, while it is still reported) would skew the typical change and the recent
        counts, so that the clean frames after the fault looked frozen or collapsed against them."""
        if change is not None and not still:  # the typical change is that of a sensor whose content moves
            state.changes.append(change)
            while len(state.changes) > self.config.history:
                state.changes.popleft()
        if signature.count:
            state.counts.append(signature.count)
            while len(state.counts) > self.config.history:
                state.counts.popleft()

    def _others_motion(self, sensor: str, now: float) -> float:
        """The largest recent change ratio of the other sensors (0 when none is known)."""
        return max((st.ratio for s, st in self.states.items()
                    if s != sensor and st.ratio is not None and abs(now - st.ratio_time) <= self.recent_s),
                   default=0.0)

    def _history_finding(self, sensor: str, state: SensorState, signature: Signature, still: bool | None,
                         stamp: float, now: float) -> Finding:
        config = self.config
        motion = self._others_motion(sensor, now)
        if still and motion >= config.moving_ratio and state.ratio < config.still_ratio * min(motion, 1.0):
            span = stamp - (state.still_since if state.still_since is not None else stamp)
            return Finding("frozen", f"{state.still_run + 1} identical frames over {span:.1f} s")
        if sensor in ("depth", "lidar"):
            limit = config.depth_collapse if sensor == "depth" else config.lidar_collapse
            recent = float(np.median(state.counts)) if len(state.counts) >= 3 else None
            if recent is not None and signature.count < limit * recent:
                what = "valid pixels" if sensor == "depth" else "returns"
                shown = (f"{signature.count:.0%}", f"{recent:.0%}") if sensor == "depth" else \
                    (f"{signature.count:.0f}", f"{recent:.0f}")
                return Finding("collapsed", f"{what} {shown[0]} against {shown[1]} recently")
        return Finding()

    def _hysteresis(self, sensor: str, state: SensorState, finding: Finding, undecided: bool) -> Verdict:
        """Enter a fault after `enter_frames` faulty frames in a row, leave it after `leave_frames`
        healthy ones. A still frame while nothing else moves decides nothing (a parked robot keeps
        a frozen sensor out until it changes again)."""
        config, before = self.config, state.fault
        frozen_hold = state.fault.kind == "frozen" and state.still_run > 0 and not finding.kind
        if finding.kind:
            state.bad, state.good = state.bad + 1, 0
            if state.bad >= config.enter_frames or state.fault.kind:
                state.fault = finding
        elif not (undecided and state.fault.kind) and not frozen_hold:
            state.good, state.bad = state.good + 1, 0
            if state.good >= config.leave_frames:
                state.fault = Finding()
        changed = bool(before.kind) != bool(state.fault.kind) or (
            bool(before.kind) and before.kind != state.fault.kind)
        return Verdict(sensor, state.fault, self._excludes(sensor, state.fault), changed)
