"""The `charm` node: synchronize whichever sensors are alive, run CHARM on that subset, publish masks.

Wiring only: subscriptions feed the ROS-free Engine (charm_ros.runtime), one worker thread runs its
newest frame (older ones are dropped and counted) and publishes the messages charm_ros.msgs.outputs
builds; timers publish the Engine's health. A sensor dying or returning changes the subset on the
next frame: no restart, no stall.
"""
from __future__ import annotations

import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.subscription import Subscription
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String

from charm_core.inference import Predictor
from charm_ros.msgs import compressed, conversions
from charm_ros.msgs.outputs import OUTPUT_TYPES, labels_message, output_messages
from charm_ros.run_node import declare, run_node
from charm_ros.runtime.engine import Engine, ModelFailure
from charm_ros.runtime.health import OK, assess
from charm_ros.runtime.node_config import PARAMETERS, SPECS, ConfigError, checkpoint_sensors, parameters, validate
from charm_ros.runtime.pipeline import FrameSkipped

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
MESSAGE_TYPES = {"Image": Image, "CameraInfo": CameraInfo, "String": String}


class CharmNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("charm", **kwargs)
        values = declare(self, PARAMETERS)
        sensors = checkpoint_sensors(values["model.checkpoint"])  # its metadata: a section per further sensor
        values.update(declare(self, parameters(sensors)[len(PARAMETERS):]))
        config = validate(values, sensors)
        predictor = Predictor.from_checkpoint(config.checkpoint, device=config["model.device"],
                                              precision=config["model.precision"])
        self.engine = Engine(predictor, config)
        self.stopping = threading.Event()
        self.last_state: tuple | None = None  # (level, alive sensors) last reported
        self.last_diag_time = 0.0
        self._create_interfaces()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.worker = threading.Thread(target=self._work, name="charm_inference", daemon=True)
        self.worker.start()
        size = self.engine.input_size
        self.get_logger().info(
            f"CHARM on {predictor.device} ({predictor.precision}), input {size[0]}x{size[1]}, "
            f"modalities {', '.join(config.enabled)}, checkpoint {config.checkpoint}")

    def _create_interfaces(self) -> None:
        cfg = self.engine.config
        sensor_qos = QoSProfile(depth=cfg["qos.input_depth"], history=HistoryPolicy.KEEP_LAST,
                                reliability=RELIABILITY[cfg["qos.input_reliability"]])
        out_qos = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST,
                             reliability=RELIABILITY[cfg["qos.output_reliability"]])
        self.topic_sensor: dict[str, str] = {}  # resolved input topic -> the sensor it feeds
        for m in cfg.enabled:
            msg_type = PointCloud2 if m == "lidar" else (
                CompressedImage if compressed.is_transport_topic(self.resolve_topic_name(cfg.topics[m])) else Image)
            sub = self.create_subscription(msg_type, cfg.topics[m], lambda msg, m=m: self._on_sensor(m, msg),
                                           sensor_qos)
            self.topic_sensor[sub.topic_name] = m
        self.camera_info_topics: dict[str, str] = {}  # sensor -> resolved CameraInfo topic
        self.latched_info_subs: dict[str, Subscription | None] = {}  # None: its one message was taken
        for m in cfg.camera_info_topics:
            if m in cfg.enabled or m == "rgb":
                sub = self.create_subscription(CameraInfo, cfg.camera_info_topics[m],
                                               lambda msg, m=m: self._on_camera_info(m, msg), sensor_qos)
                self.topic_sensor[sub.topic_name] = m
                self.camera_info_topics[m] = sub.topic_name
        self.pubs = {name: self.create_publisher(MESSAGE_TYPES[kind], f"~/{name}", out_qos)
                     for name, kind in OUTPUT_TYPES.items()}
        self.labels_pub = self.create_publisher(String, "~/labels", LATCHED)
        self.labels_pub.publish(labels_message(self.engine.predictor.class_names, self.engine.palette))
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # steady time: diagnostics keep coming when the ROS clock does not move (use_sim_time, no /clock)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(min(0.25, cfg["diagnostics.period"]), self._diagnostics_tick, clock=steady)
        self.create_timer(0.5, self._catch_latched_camera_info, clock=steady)

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ------------------------------------------------------------------ callbacks: convert + enqueue only
    def _on_sensor(self, sensor: str, msg) -> None:
        try:
            self.engine.accept(sensor, msg, self.now())
        except conversions.ConversionError as exc:
            self.get_logger().warning(f"rejected {sensor} message: {exc}", throttle_duration_sec=5.0)

    def _on_camera_info(self, sensor: str, msg: CameraInfo) -> None:
        try:
            changed = self.engine.accept_camera_info(sensor, msg)
        except conversions.ConversionError as exc:
            self.get_logger().warning(f"rejected {sensor} CameraInfo: {exc}", throttle_duration_sec=5.0)
            return
        if changed:
            self.get_logger().info(f"{sensor} camera: {conversions.camera_info_summary(msg)}")

    def _catch_latched_camera_info(self) -> None:
        """A CameraInfo latched (transient local) before this node subscribed never reaches the volatile
        subscription. While a camera has none, a latched publisher on its topic gets a transient-local
        subscription that takes the stored message and is then dropped. It is made only for such a
        publisher: to a volatile one it would be an incompatible-QoS warning in that publisher's log."""
        for m, topic in self.camera_info_topics.items():
            if self.engine.has_camera(m) or m in self.latched_info_subs:
                continue
            if any(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                   and p.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                   for p in self.get_publishers_info_by_topic(topic)):
                self.latched_info_subs[m] = self.create_subscription(
                    CameraInfo, topic, lambda msg, m=m: self._on_latched_camera_info(m, msg), LATCHED)

    def _on_latched_camera_info(self, sensor: str, msg: CameraInfo) -> None:
        self._on_camera_info(sensor, msg)
        sub, self.latched_info_subs[sensor] = self.latched_info_subs.get(sensor), None
        if sub is not None:
            self.destroy_subscription(sub)

    def on_undecodable(self, topic: str, error: Exception) -> None:
        """rclpy could not convert a received message (see run_node.TolerantExecutor)."""
        sensor = self.topic_sensor.get(topic)
        if sensor is not None:
            self.engine.reject(sensor, f"undecodable message on {topic}: {error}", self.now())
        self.get_logger().warning(f"dropped an undecodable message on {topic}: {error}", throttle_duration_sec=5.0)

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
        frames = self.engine.due(self.now(), latest=True, wait_s=0.005)
        if not frames or not any(pub.get_subscription_count() > 0 for pub in self.pubs.values()):
            return
        try:
            result = self.engine.run(frames[-1], self.now())
        except FrameSkipped as exc:
            self.get_logger().warning(f"frame skipped: {exc}", throttle_duration_sec=5.0)
            return
        except ModelFailure as exc:
            self.get_logger().error(f"inference failed: {exc}", throttle_duration_sec=5.0)
            return
        cfg = self.engine.config
        wanted = [name for name, pub in self.pubs.items() if cfg.outputs[name] and pub.get_subscription_count() > 0]
        for name, msg in output_messages(result, wanted, self.engine.palette, cfg["outputs.overlay_alpha"]).items():
            self.pubs[name].publish(msg)
        self.engine.published(result, self.now())

    # ------------------------------------------------------------------ diagnostics
    def _clock_error(self) -> str:
        clock = self.get_clock()
        if clock.ros_time_is_active and clock.now().nanoseconds == 0:
            return ("use_sim_time is true but no /clock has arrived: sensor liveness and sync timeouts "
                    "cannot advance (play the bag with --clock, or set use_sim_time false)")
        return ""

    def _diagnostics_tick(self) -> None:
        reports = assess(self.engine.health(self.now(), self._clock_error(), self.camera_info_topics.values()))
        pipeline = reports[0]
        # A change is a sensor dying or returning, or the level changing; not the per-frame subset,
        # which alternates by design when a faster reference outruns its partners (30 Hz RGB, 10 Hz LiDAR).
        state = (pipeline.level, pipeline.values["alive"])
        due = time.monotonic() - self.last_diag_time >= self.engine.config["diagnostics.period"]
        if not due and state == self.last_state:
            return
        if state != self.last_state:
            if pipeline.level == OK:  # two call sites: rclpy fixes a call site's severity at its first use
                self.get_logger().info(pipeline.message)
            else:
                self.get_logger().warning(pipeline.message)
        self.last_state, self.last_diag_time = state, time.monotonic()
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
        specs = self.engine.config.specs
        ours = [p for p in params if p.name in specs]
        try:
            for p in ours:
                if not specs[p.name].dynamic:
                    raise ConfigError(f"{p.name} can only be set at start")
                specs[p.name].check(p.value)
            new = validate({**self.engine.config.raw, **{p.name: p.value for p in ours}}, self.engine.config.sensors)
            if self.engine.reconfigure(new):
                self.labels_pub.publish(labels_message(self.engine.predictor.class_names, self.engine.palette))
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def shutdown(self) -> None:
        self.stopping.set()
        self.engine.wake()
        self.worker.join(timeout=5.0)


def topics_help() -> str:
    """The node's topics for --help: inputs (remap them, or set <sensor>.topic) and outputs."""
    inputs = [f"  {SPECS[n].default:<24} {SPECS[n].description}" for n in SPECS if n.endswith("topic")] + [
        f"  {'~/<name>/image':<24} each further camera of the checkpoint (e.g. thermal), with ~/<name>/camera_info"]
    outputs = [f"  ~/{name:<22} {kind}" for name, kind in OUTPUT_TYPES.items()]
    return "\n".join(["subscribed topics:", *inputs, "published topics:", *outputs,
                      f"  {'~/labels':<24} String (latched JSON: classes, palette)",
                      f"  {'/diagnostics':<24} DiagnosticArray"])


def main(args: list[str] | None = None) -> int:
    # One executor thread: callbacks are short. rclpy's MultiThreadedExecutor with a busy mutually
    # exclusive group was seen spinning on the GIL and starving every subscription for seconds.
    return run_node(CharmNode, "charm", args, parameters=PARAMETERS, summary=f"{__doc__}\n{topics_help()}")


if __name__ == "__main__":
    sys.exit(main())
