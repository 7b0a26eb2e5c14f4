"""The `charm` node: synchronize whichever sensors are alive, run CHARM on that subset, publish masks.

Callbacks only convert and enqueue; one worker thread takes the newest complete frame (older ones are
dropped and counted), runs the shared Pipeline and publishes. A sensor dying or returning changes the
subset on the next frame: no restart, no stall.
"""
from __future__ import annotations

import json
import math
import statistics
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.subscription import Subscription
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String

from charm_core.classes import colorize
from charm_core.inference import Predictor
from charm_core.modalities import MODALITIES, subset_name
from charm_core.visualize import confidence_to_mono8, overlay
from charm_ros import compressed, conversions
from charm_ros.health import OK, PipelineHealth, ModalityHealth, assess
from charm_ros.node_config import (PARAMETERS, SPECS, ConfigError, NodeConfig, check_value, resolve_palette,
                                   validate)
from charm_ros.parameters import declare
from charm_ros.pipeline import FrameSkipped, Pipeline, PipelineConfig, Result
from charm_ros.run_node import run_node
from charm_ros.sync import Synchronizer

@dataclass
class Counters:
    rejected: dict[str, int] = field(default_factory=lambda: {m: 0 for m in MODALITIES})
    last_error: dict[str, str] = field(default_factory=lambda: {m: "" for m in MODALITIES})
    last_rejected: dict[str, float] = field(default_factory=dict)  # node clock time of the last rejection
    info_rejected: dict[str, int] = field(default_factory=lambda: {m: 0 for m in MODALITIES})  # CameraInfo
    info_error: dict[str, str] = field(default_factory=lambda: {m: "" for m in MODALITIES})
    left_out: dict[str, tuple[float, str]] = field(default_factory=dict)  # (node time, why) in a frame, not used
    frames: int = 0
    frames_dropped: int = 0
    frames_skipped: int = 0
    publish_times: deque = field(default_factory=lambda: deque(maxlen=50))
    # (monotonic publish time, encode ms, model forward ms, stamp -> publish ms) of recent frames
    timings: deque = field(default_factory=lambda: deque(maxlen=100))
    model_error: str = ""
    subset: tuple[str, ...] = ()


class CharmNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("charm", **kwargs)
        self.config: NodeConfig = validate(declare(self, PARAMETERS))
        predictor = Predictor.from_checkpoint(self.config.checkpoint, device=self.config.device,
                                              precision=self.config.precision)
        self.pipeline = Pipeline.for_node(predictor, self.config)
        self.palette = resolve_palette(self.config.palette, predictor.palette)
        self.sync = Synchronizer(self.config.sync)
        self.counters = Counters()
        self.lock = threading.Condition()
        self.stopping = threading.Event()
        self.last_state: tuple | None = None  # (level, alive sensors) last reported
        self.last_diag_time = 0.0

        self._create_interfaces(predictor)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.worker = threading.Thread(target=self._work, name="charm_inference", daemon=True)
        self.worker.start()
        size = self.pipeline.config.input_size
        self.get_logger().info(
            f"CHARM on {predictor.device} ({predictor.precision}), input {size[0]}x{size[1]}, "
            f"modalities {', '.join(self.config.enabled)}, checkpoint {self.config.checkpoint}")

    # ------------------------------------------------------------------ interfaces
    def _create_interfaces(self, predictor: Predictor) -> None:
        cfg = self.config
        reliability = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}
        sensor_qos = QoSProfile(depth=cfg.input_depth, history=HistoryPolicy.KEEP_LAST,
                                reliability=reliability[cfg.input_reliability])
        out_qos = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST,
                             reliability=reliability[cfg.output_reliability])
        self.topic_modality: dict[str, str] = {}  # resolved input topic -> the sensor it feeds
        for m in cfg.enabled:
            msg_type = PointCloud2 if m == "lidar" else (
                CompressedImage if compressed.is_transport_topic(self.resolve_topic_name(cfg.topics[m])) else Image)
            sub = self.create_subscription(msg_type, cfg.topics[m], lambda msg, m=m: self._on_sensor(m, msg),
                                           sensor_qos)
            self.topic_modality[sub.topic_name] = m
        self.camera_info_topics: dict[str, str] = {}  # sensor -> resolved CameraInfo topic
        self.latched_info_subs: dict[str, Subscription | None] = {}  # None: its one message was taken
        for m in ("rgb", "depth"):
            if m in cfg.enabled or m == "rgb":
                sub = self.create_subscription(CameraInfo, cfg.camera_info_topics[m],
                                               lambda msg, m=m: self._on_camera_info(m, msg), sensor_qos)
                self.topic_modality[sub.topic_name] = m
                self.camera_info_topics[m] = sub.topic_name
        self.pubs = {
            "mask": self.create_publisher(Image, "~/mask", out_qos),
            "color_mask": self.create_publisher(Image, "~/color_mask", out_qos),
            "overlay": self.create_publisher(Image, "~/overlay", out_qos),
            "confidence": self.create_publisher(Image, "~/confidence", out_qos),
            "camera_info": self.create_publisher(CameraInfo, "~/camera_info", out_qos),
            "subset": self.create_publisher(String, "~/subset", out_qos),
        }
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.labels_pub = self.create_publisher(String, "~/labels", latched)
        self._publish_labels()
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # steady time: diagnostics keep coming when the ROS clock does not move (use_sim_time, no /clock)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(min(0.25, cfg.diagnostics_period), self._diagnostics_tick, clock=steady)
        self.create_timer(0.5, self._catch_latched_camera_info, clock=steady)

    def _publish_labels(self) -> None:
        self.labels_pub.publish(String(data=json.dumps({
            "classes": list(self.pipeline.predictor.class_names), "palette": self.palette.tolist(), "no_data": 255})))

    # ------------------------------------------------------------------ callbacks: convert + enqueue only
    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_sensor(self, modality: str, msg) -> None:
        try:
            sample = self.pipeline.accept(modality, msg)
        except (conversions.ConversionError, ValueError) as exc:
            self._reject(modality, str(exc))
            return
        with self.lock:
            self.sync.add(modality, sample.stamp, sample, self.now())
            self.lock.notify()

    def _on_camera_info(self, modality: str, msg: CameraInfo) -> None:
        before = self.pipeline.cameras.get(modality)
        try:
            self.pipeline.accept_camera_info(modality, msg)
        except (conversions.ConversionError, ValueError) as exc:
            self.counters.info_rejected[modality] += 1
            self.counters.info_error[modality] = str(exc)
            self.get_logger().warning(f"rejected {modality} CameraInfo: {exc}", throttle_duration_sec=5.0)
            return
        self.counters.info_error[modality] = ""
        after = self.pipeline.cameras[modality]
        if before is None or before.hw != after.hw or not np.array_equal(before.K, after.K):
            self.get_logger().info(f"{modality} camera: {conversions.camera_info_summary(msg)}")

    def _catch_latched_camera_info(self) -> None:
        """A CameraInfo published once and latched (transient local) before this node subscribed never
        reaches the volatile CameraInfo subscription, and depth and LiDAR would wait for it forever.
        While a camera has none, a latched publisher on its topic gets a matching transient-local
        subscription that takes the stored message and is then dropped (once: later CameraInfos come
        through the volatile subscription). It is made only for such a publisher: a transient-local
        subscription to a volatile one is an incompatible-QoS warning in that publisher's log."""
        for m, topic in self.camera_info_topics.items():
            if m in self.pipeline.cameras or m in self.latched_info_subs:
                continue
            if any(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                   and p.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                   for p in self.get_publishers_info_by_topic(topic)):
                qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
                self.latched_info_subs[m] = self.create_subscription(
                    CameraInfo, topic, lambda msg, m=m: self._on_latched_camera_info(m, msg), qos)

    def _on_latched_camera_info(self, modality: str, msg: CameraInfo) -> None:
        self._on_camera_info(modality, msg)
        sub, self.latched_info_subs[modality] = self.latched_info_subs.get(modality), None
        if sub is not None:
            self.destroy_subscription(sub)

    def on_undecodable(self, topic: str, error: Exception) -> None:
        """rclpy could not convert a received message (see run_node.TolerantExecutor)."""
        modality = self.topic_modality.get(topic)
        if modality is None:
            self.get_logger().warning(f"dropped an undecodable message on {topic}: {error}", throttle_duration_sec=5.0)
        else:
            self._reject(modality, f"undecodable message on {topic}: {error}")

    def _reject(self, modality: str, reason: str) -> None:
        self.counters.rejected[modality] += 1
        self.counters.last_error[modality] = reason
        self.counters.last_rejected[modality] = self.now()
        self.get_logger().warning(f"rejected {modality} message: {reason}", throttle_duration_sec=5.0)

    # ------------------------------------------------------------------ worker: newest frame wins
    def _work(self) -> None:
        while not self.stopping.is_set():
            try:
                self._step()
            except Exception:
                if self.stopping.is_set() or not self.context.ok():
                    return  # Ctrl-C shut the context down under us: nothing is left to publish to
                raise

    def _step(self) -> None:
        with self.lock:
            frames = self.sync.poll(self.now())
            if not frames:
                self.lock.wait(0.005)
                return
        self.counters.frames_dropped += len(frames) - 1
        frame = frames[-1]
        if not self._anyone_listening():
            return
        try:
            result = self.pipeline.process(frame)
        except FrameSkipped as exc:
            self.counters.frames_skipped += 1
            self.counters.left_out.update({m: (self.now(), str(exc)) for m in frame.data})
            self.get_logger().warning(f"frame skipped: {exc}", throttle_duration_sec=5.0)
            return
        except Exception as exc:  # a model failure must not kill the node; it is reported as ERROR
            self.counters.model_error = f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"inference failed: {self.counters.model_error}", throttle_duration_sec=5.0)
            return
        self.counters.model_error = ""
        self.counters.left_out.update({m: (self.now(), why) for m, why in result.skipped.items()})
        self._publish(result)

    def _anyone_listening(self) -> bool:
        return any(pub.get_subscription_count() > 0 for pub in self.pubs.values())

    def _publish(self, result: Result) -> None:
        cfg = self.config
        header = result.frame.data[result.frame.reference].header
        want = {name: cfg.outputs[name] and pub.get_subscription_count() > 0 for name, pub in self.pubs.items()}
        if want["mask"]:
            self.pubs["mask"].publish(conversions.numpy_to_image(result.labels, "mono8", header))
        if want["color_mask"]:
            self.pubs["color_mask"].publish(
                conversions.numpy_to_image(colorize(result.labels, self.palette), "rgb8", header))
        if want["overlay"]:
            blended = overlay(result.background, result.labels, cfg.overlay_alpha, self.palette)
            self.pubs["overlay"].publish(conversions.numpy_to_image(blended, "rgb8", header))
        if want["confidence"]:
            self.pubs["confidence"].publish(
                conversions.numpy_to_image(confidence_to_mono8(result.confidence), "mono8", header))
        if want["camera_info"] and result.K is not None:
            info = conversions.k_to_camera_info(result.K, result.labels.shape[:2], header)
            self.pubs["camera_info"].publish(info)
        if want["subset"]:
            self.pubs["subset"].publish(String(data=subset_name(result.subset)))
        c = self.counters
        c.frames += 1
        c.publish_times.append(time.monotonic())
        c.timings.append((time.monotonic(), result.encode_ms, result.forward_ms,
                          (self.now() - result.frame.stamp) * 1e3))
        c.subset = result.subset

    # ------------------------------------------------------------------ diagnostics
    def health(self) -> PipelineHealth:
        now = self.now()
        with self.lock:
            alive = set(self.sync.alive(now))
            refusing = set(self.sync.refusing(now))
            unmatched = self.sync.unmatched(now)
            reference = self.sync.reference(now)
            stats = self.sync.stats()
        ref_lag = None if reference is None else stats[reference].typical_lag
        stale_timeout = {mc.name: mc.stale_timeout for mc in self.config.sync.modalities}
        topics = " or ".join(self.camera_info_topics.values())
        modalities = []
        for m in self.config.enabled:
            s = stats[m]
            left_when, left_why = self.counters.left_out.get(m, (-math.inf, ""))
            left_out = "" if now - left_when > max(1.0, stale_timeout[m]) else (
                f"{left_why} (CameraInfo topics: {topics})" if "CameraInfo" in left_why else left_why)
            age = None if s.last_arrival is None else max(0.0, now - s.last_arrival)
            modalities.append(ModalityHealth(
                name=m, alive=m in alive, age=age, rate_hz=s.rate_hz if m in alive else 0.0,
                received=s.received, used=s.used, dropped=s.dropped + s.duplicates + s.out_of_order,
                rejected=self.counters.rejected[m], last_error=self.counters.last_error[m],
                stamps_refused=m in refusing, lag=s.lag, unmatched_s=unmatched.get(m),
                rejecting=now - self.counters.last_rejected.get(m, -math.inf) <= stale_timeout[m], left_out=left_out,
                info_rejected=self.counters.info_rejected[m], info_error=self.counters.info_error[m],
                offset_s=None if m == reference or None in (ref_lag, s.typical_lag) else ref_lag - s.typical_lag))
        c = self.counters
        times = list(c.publish_times)
        recent = [t for t in times if t > time.monotonic() - 3.0]
        rate = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 2 and recent[-1] > recent[0] else 0.0
        # latencies: medians over the frames of the last diagnostics period (else the last frame)
        timings = list(c.timings)  # a copy: the worker appends while this runs
        timings = [t for t in timings if t[0] > time.monotonic() - self.config.diagnostics_period] or timings[-1:]
        encode_ms, inference_ms, end_to_end_ms = (
            (statistics.median(t[i] for t in timings) if timings else None) for i in (1, 2, 3))
        clock_error = ""
        clock = self.get_clock()
        if clock.ros_time_is_active and clock.now().nanoseconds == 0:
            clock_error = ("use_sim_time is true but no /clock has arrived: sensor liveness and sync timeouts "
                           "cannot advance (play the bag with --clock, or set use_sim_time false)")
        gpu = None
        if self.pipeline.predictor.device.type == "cuda":
            gpu = torch.cuda.max_memory_allocated(self.pipeline.predictor.device) / 2 ** 20
        return PipelineHealth(
            enabled=self.config.enabled, modalities=modalities, subset=c.subset, frames=c.frames,
            frames_dropped=c.frames_dropped, frames_skipped=c.frames_skipped, encode_ms=encode_ms,
            inference_ms=inference_ms, end_to_end_ms=end_to_end_ms, output_rate_hz=rate, model_error=c.model_error,
            clock_error=clock_error, reference=reference, gpu_memory_mb=gpu)

    def _diagnostics_tick(self) -> None:
        reports = assess(self.health())
        pipeline = reports[0]
        # A change is a sensor dying or returning, or the level changing; not the per-frame subset,
        # which alternates by design when a faster reference outruns its partners (30 Hz RGB, 10 Hz LiDAR).
        state = (pipeline.level, pipeline.values["alive"])
        due = time.monotonic() - self.last_diag_time >= self.config.diagnostics_period
        if not due and state == self.last_state:
            return
        if state != self.last_state:
            if pipeline.level == OK:  # two call sites: rclpy fixes a call site's severity at its first use
                self.get_logger().info(pipeline.message)
            else:
                self.get_logger().warning(pipeline.message)
        self.last_state = state
        self.last_diag_time = time.monotonic()
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        for r in reports:
            msg.status.append(DiagnosticStatus(
                level=bytes([r.level]), name=f"{self.get_fully_qualified_name()}: {r.name.split(': ')[1]}",
                message=r.message, hardware_id="charm",
                values=[KeyValue(key=k, value=v) for k, v in r.values.items()]))
        self.diag_pub.publish(msg)

    # ------------------------------------------------------------------ run-time parameter changes
    def _on_set_parameters(self, params) -> SetParametersResult:
        for p in params:
            if p.name not in SPECS:
                continue
            if not SPECS[p.name].dynamic:
                return SetParametersResult(successful=False, reason=f"{p.name} can only be set at start")
            try:
                check_value(p.name, p.value)
            except ConfigError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        values = dict(self.config.raw)
        values.update({p.name: p.value for p in params if p.name in SPECS})
        try:
            new = validate(values)
            palette = resolve_palette(new.palette, self.pipeline.predictor.palette)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        with self.lock:
            self.config = new
            self.sync.config = new.sync
            self.pipeline.config = PipelineConfig.for_node(new, self.pipeline.config.input_size)
        if not np.array_equal(palette, self.palette):
            self.palette = palette
            self._publish_labels()  # latched: late subscribers get the colours in use
        return SetParametersResult(successful=True)

    def shutdown(self) -> None:
        self.stopping.set()
        with self.lock:
            self.lock.notify_all()
        self.worker.join(timeout=5.0)


def main(args: list[str] | None = None) -> int:
    # One executor thread: callbacks are short. rclpy's MultiThreadedExecutor with a busy mutually
    # exclusive group was seen spinning on the GIL and starving every subscription for seconds.
    return run_node(CharmNode, "charm", args, parameters=PARAMETERS, summary=__doc__)


if __name__ == "__main__":
    sys.exit(main())
