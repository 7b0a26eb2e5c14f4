"""The Engine: the one accept -> sync -> run loop that both the live node and `charm-bag-eval` drive.

It owns the synchronizer, the pipeline (conversions' checks, encoders, predictor), every counter and
the health model, so a frame takes the same path on- and offline and both report the same numbers.
Drivers only feed it messages with a clock (`accept`, `accept_camera_info`), ask it for frames
(`due`), run them (`run`) and turn results into messages or reports. Thread-safe for one feeding
thread and one running thread (the node's executor and its inference worker).
"""
from __future__ import annotations

import math
import statistics
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

import numpy as np
import torch

from charm_core.inference import Predictor
from charm_core.modalities import all_subsets
from charm_ros.msgs.fields import ConversionError
from charm_ros.runtime.content_health import ContentHealth, Verdict
from charm_ros.runtime.faults import FaultInjector
from charm_ros.runtime.health import ModalityHealth, PipelineHealth
from charm_ros.runtime.node_config import NodeConfig, resolve_palette
from charm_ros.runtime.pipeline import Encoded, FrameSkipped, Pipeline, Result
from charm_ros.runtime.sync import Frame, Synchronizer


REJECTION_MEMORY_S = 10.0  # a sensor's status names its last rejected message this long after it


class ModelFailure(RuntimeError):
    """The model raised on a frame; counted (ERROR on /diagnostics), never fatal to the node."""


@dataclass
class Counters:
    """Per sensor (any of the checkpoint's, 0 / "" until it has one) and per frame."""

    rejected: Counter = field(default_factory=Counter)
    last_error: defaultdict = field(default_factory=lambda: defaultdict(str))
    last_rejected: dict[str, float] = field(default_factory=dict)  # clock time of the last rejection
    info_rejected: Counter = field(default_factory=Counter)  # CameraInfo
    info_error: defaultdict = field(default_factory=lambda: defaultdict(str))
    left_out: dict[str, tuple[float, str]] = field(default_factory=dict)  # (clock time, why) in a frame, not used
    left_out_frames: Counter = field(default_factory=Counter)  # sensor -> frames that had it but could not use it
    in_frames: Counter = field(default_factory=Counter)  # sensor -> frames it went into (a slower one serves several)
    frames: int = 0
    frames_dropped: int = 0
    frames_skipped: int = 0
    publish_times: deque = field(default_factory=lambda: deque(maxlen=50))
    # (monotonic publish time, encode ms, model forward ms, stamp -> publish ms) of recent frames
    timings: deque = field(default_factory=lambda: deque(maxlen=100))
    model_error: str = ""
    subset: tuple[str, ...] = ()
    backend: str = ""  # what served the last published frame ("onnxruntime", "torch (graph not ready)", ...)


class Engine:
    def __init__(self, predictor: Predictor, config: NodeConfig) -> None:
        # raises ValueError for enabled sensors the checkpoint lacks
        self.pipeline = Pipeline.for_node(predictor, config.pipeline, config.enabled)
        self.config = config
        self.palette = resolve_palette(config.palette, predictor.palette)
        self.sync = Synchronizer(config.sync)
        self.counters = Counters()
        self.lock = threading.Condition()
        self.content = ContentHealth(config.health)
        self.content_events: deque[Verdict] = deque(maxlen=100)  # faults entered / recovered: drivers log them once
        self.faults: FaultInjector | None = None  # scripted content faults (charm-bag-eval --faults)
        self.faults_origin: float | None = None   # stamp the fault schedule counts from (the first message's)

    @property
    def predictor(self) -> Predictor:
        return self.pipeline.predictor

    @property
    def input_size(self) -> tuple[int, int]:
        return self.pipeline.config.input_size

    @classmethod
    def load(cls, config: NodeConfig) -> Engine:
        """The Engine of the node's parameters, its model loaded; graphs for every subset the enabled
        sensors can form start building in the background (frames run on torch meanwhile). Raises
        ValueError or OSError with the reason (a missing checkpoint, a sensor it was not trained with)."""
        predictor = Predictor.from_checkpoint(config.checkpoint, device=config.model.device,
                                              precision=config.model.precision, backend=config.model.backend)
        engine = cls(predictor, config)
        predictor.prepare(all_subsets(tuple(m for m in predictor.modalities if m in config.enabled)),
                          engine.input_size, background=True)
        return engine

    def describe(self) -> str:
        """One line for the log: where and on what the model runs."""
        p, (h, w) = self.predictor, self.input_size
        return (f"CHARM on {p.device} ({p.precision}, backend {p.backend}), input {h}x{w}, "
                f"modalities {', '.join(self.config.enabled)}, "
                f"checkpoint {self.config.checkpoint}")

    def reconfigure(self, config: NodeConfig) -> bool:
        """Swap in run-time parameter changes; True when the palette changed (~/labels to re-latch).
        Raises ConfigError, changing nothing, when the new values do not fit the checkpoint."""
        palette = resolve_palette(config.palette, self.predictor.palette)
        with self.lock:
            self.config = config
            self.sync.config = config.sync
            self.content.config = config.health
            self.pipeline.config = replace(config.pipeline, input_size=self.pipeline.config.input_size)
        changed = not np.array_equal(palette, self.palette)
        self.palette = palette
        return changed

    # ------------------------------------------------------------------ feeding
    def accept(self, sensor: str, msg: Any, now: float) -> None:
        """Convert, check and buffer one sensor message; raises ConversionError (counted) if rejected."""
        try:
            sample = self.pipeline.accept(sensor, msg)
        except (ConversionError, ValueError) as exc:
            self.reject(sensor, str(exc), now)
            raise ConversionError(str(exc)) from exc
        if self.faults is not None:
            self.faults_origin = sample.stamp if self.faults_origin is None else self.faults_origin
            sample.array = self.faults.apply(sensor, sample.array, sample.stamp - self.faults_origin)
        verdict = self.content.observe(sensor, sample.array, sample.stamp, now)
        with self.lock:
            if verdict.changed:
                self.content_events.append(verdict)
            self.sync.silence(sensor, verdict.excluded)
            if not verdict.excluded:
                self.sync.add(sensor, sample.stamp, sample, now)
            self.lock.notify()

    def accept_camera_info(self, sensor: str, msg: Any) -> bool:
        """Take a CameraInfo; True when the camera's size or K changed. Raises ConversionError (counted)."""
        before = self.pipeline.cameras.get(sensor)
        try:
            self.pipeline.accept_camera_info(sensor, msg)
        except (ConversionError, ValueError) as exc:
            self.counters.info_rejected[sensor] += 1
            self.counters.info_error[sensor] = str(exc)
            raise ConversionError(str(exc)) from exc
        self.counters.info_error[sensor] = ""
        after = self.pipeline.cameras[sensor]
        return before is None or before.hw != after.hw or not np.array_equal(before.K, after.K)

    def has_camera(self, sensor: str) -> bool:
        return sensor in self.pipeline.cameras

    def reject(self, sensor: str, reason: str, now: float) -> None:
        """Count a message of `sensor` that could not be used (also one rclpy failed to convert)."""
        self.counters.rejected[sensor] += 1
        self.counters.last_error[sensor] = reason
        self.counters.last_rejected[sensor] = now

    # ------------------------------------------------------------------ running
    def due(self, now: float, latest: bool = False, wait_s: float = 0.0) -> list[Frame]:
        """Frames ready at `now`, oldest first. `latest`: only the newest (the others are counted as
        dropped: a live node under load skips ahead). With `wait_s`, waits that long for a message
        when none is ready."""
        with self.lock:
            frames = self.sync.poll(now)
            if not frames:
                if wait_s > 0:
                    self.lock.wait(wait_s)
                return []
        if latest and len(frames) > 1:
            self.counters.frames_dropped += len(frames) - 1
            frames = frames[-1:]
        return frames

    def flush(self, now: float) -> list[Frame]:
        """The end of a recording: let pending timeouts expire at `now`, then release what is buffered."""
        with self.lock:
            return self.sync.poll(now) + self.sync.flush()

    def wake(self) -> None:
        with self.lock:
            self.lock.notify_all()

    def encode(self, frame: Frame, now: float) -> Encoded:
        """The frame's network images (no model run: what `charm-bag-export` writes); raises
        FrameSkipped (counted) when nothing is encodable; unusable sensors are recorded as left out."""
        self.counters.in_frames.update(frame.data.keys())
        try:
            encoded = self.pipeline.encode(frame)
        except (FrameSkipped, ValueError) as exc:  # ValueError: the encoders refused what the checks let by
            self.counters.frames_skipped += 1
            self._leave_out({m: str(exc) for m in frame.data}, now)
            if isinstance(exc, FrameSkipped):
                raise
            raise FrameSkipped(f"the encoders refused the frame: {exc}") from exc
        self._leave_out(encoded.skipped, now)
        return encoded

    def run(self, frame: Frame, now: float) -> Result:
        """Encode the frame and run the model. Raises FrameSkipped (nothing encodable) or ModelFailure,
        both counted; sensors in the frame that could not be used are recorded as left out."""
        encoded = self.encode(frame, now)
        try:
            result = self.pipeline.predict(frame, encoded)
        except Exception as exc:  # a model failure must not kill the node; it is reported as ERROR
            self.counters.model_error = f"{type(exc).__name__}: {exc}"
            raise ModelFailure(self.counters.model_error) from exc
        self.counters.model_error = ""
        return result

    def published(self, result: Result, now: float) -> None:
        """The result's messages went out: frame rate, latencies and subset for the diagnostics."""
        c = self.counters
        c.frames += 1
        c.publish_times.append(time.monotonic())
        c.timings.append((time.monotonic(), result.encode_ms, result.forward_ms, (now - result.frame.stamp) * 1e3))
        c.subset = result.subset
        c.backend = self.predictor.last_backend

    def _leave_out(self, why: dict[str, str], now: float) -> None:
        self.counters.left_out.update({m: (now, text) for m, text in why.items()})
        self.counters.left_out_frames.update(why.keys())

    # ------------------------------------------------------------------ health
    def health(self, now: float, clock_error: str = "", camera_info_topics: Iterable[str] = (),
               qos_warnings: dict[str, str] | None = None, output_warnings: dict[str, str] | None = None,
               paused: bool = False) -> PipelineHealth:
        """The diagnostics model at `now`; `camera_info_topics` are named when a sensor waits for one.
        The driver adds what only the ROS graph knows: per sensor, why its topics do not connect
        (`qos_warnings`), per output topic the subscribers it cannot serve, and whether it paused inference."""
        qos_warnings = qos_warnings or {}
        with self.lock:
            alive = set(self.sync.alive(now))
            refusing = set(self.sync.refusing(now))
            unmatched = self.sync.unmatched(now)
            reference = self.sync.reference(now)
            stats = self.sync.stats()
        ref_lag = None if reference is None else stats[reference].typical_lag
        stale_timeout = {mc.name: mc.stale_timeout for mc in self.config.sync.modalities}
        topics = " or ".join(camera_info_topics)
        c = self.counters
        verdicts = (self.content.verdict(m) for m in self.config.enabled)
        content = {v.sensor: v for v in verdicts if v is not None and v.fault.kind}
        modalities = []
        for m in self.config.enabled:
            s = stats[m]
            left_when, left_why = c.left_out.get(m, (-math.inf, ""))
            left_out = "" if now - left_when > max(1.0, stale_timeout[m]) else (
                f"{left_why} (CameraInfo topics: {topics})" if "CameraInfo" in left_why else left_why)
            age = None if s.last_arrival is None else max(0.0, now - s.last_arrival)
            modalities.append(ModalityHealth(
                name=m, alive=m in alive, age=age, rate_hz=s.rate_hz if m in alive else 0.0,
                received=s.received, used=s.used, dropped=s.dropped + s.duplicates + s.out_of_order,
                rejected=c.rejected[m],
                last_error=c.last_error[m] if now - c.last_rejected.get(m, -math.inf) <= REJECTION_MEMORY_S else "",
                stamps_refused=m in refusing, lag=s.lag, unmatched_s=unmatched.get(m),
                rejecting=now - c.last_rejected.get(m, -math.inf) <= stale_timeout[m], left_out=left_out,
                info_rejected=c.info_rejected[m], info_error=c.info_error[m], qos_warning=qos_warnings.get(m, ""),
                content=content[m].text() if m in content else "", excluded=m in content and content[m].excluded,
                offset_s=None if m == reference or None in (ref_lag, s.typical_lag) else ref_lag - s.typical_lag))
        recent = [t for t in list(c.publish_times) if t > time.monotonic() - 3.0]
        rate = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 2 and recent[-1] > recent[0] else 0.0
        # latencies: medians over the frames of the last diagnostics period (else the last frame)
        timings = list(c.timings)  # a copy: the worker appends while this runs
        period = self.config.diagnostics_period
        timings = [t for t in timings if t[0] > time.monotonic() - period] or timings[-1:]
        encode_ms, inference_ms, end_to_end_ms = (
            (statistics.median(t[i] for t in timings) if timings else None) for i in (1, 2, 3))
        device = self.predictor.device
        gpu = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None
        return PipelineHealth(
            enabled=self.config.enabled, modalities=modalities, subset=c.subset, frames=c.frames,
            frames_dropped=c.frames_dropped, frames_skipped=c.frames_skipped, encode_ms=encode_ms,
            inference_ms=inference_ms, end_to_end_ms=end_to_end_ms, output_rate_hz=rate, model_error=c.model_error,
            clock_error=clock_error, reference=reference, gpu_memory_mb=gpu, paused=paused,
            output_warnings=dict(output_warnings or {}), extra=self._runtime_values())

    def _runtime_values(self) -> dict[str, str]:
        """The runtime backend (what served the last frame) and how many of its graphs are ready."""
        status = self.predictor.status()
        total = len(status["ready"]) + len(status["pending"]) + len(status["failed"])
        return {"backend": self.counters.backend or status["backend"],
                "graphs_ready": f"{len(status['ready'])}/{total}" if total else "n/a"}
