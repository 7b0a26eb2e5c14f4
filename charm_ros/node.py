"""The `charm` node: synchronize whichever sensors are alive, run CHARM on that subset, publish masks.

A managed lifecycle node: configure loads the model and the ROS-free Engine (charm_ros.runtime),
activate subscribes and starts the inference worker, deactivate stops it and frees the model's
memory, cleanup drops the outputs; `autostart` (default) goes to active at start. `~/enable`
(std_srvs/SetBool) pauses and resumes inference without a transition. Wiring only: subscriptions
feed the Engine, one worker thread runs its newest frame (older ones are dropped and counted) and
publishes the messages charm_ros.msgs.outputs builds; timers publish the Engine's health and what
the ROS graph says about the node's topics (charm_ros.qos_watch).
"""
from __future__ import annotations

import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String
from std_srvs.srv import SetBool

from charm_core.inference import Predictor, release_memory
from charm_core.modalities import all_subsets
from charm_ros.latched_info import LATCHED, LatchedCameraInfo
from charm_ros.msgs import compressed, conversions
from charm_ros.msgs.outputs import OUTPUT_TYPES, diagnostics_message, labels_message, output_messages
from charm_ros.qos_watch import QosWatch
from charm_ros.run_node import declare, run_node
from charm_ros.runtime.engine import Engine, ModelFailure
from charm_ros.runtime.health import OK, assess, idle_reports
from charm_ros.runtime.node_config import PARAMETERS, SPECS, ConfigError, checkpoint_sensors, parameters, validate
from charm_ros.runtime.pipeline import FrameSkipped

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}
MESSAGE_TYPES = {"Image": Image, "CameraInfo": CameraInfo, "String": String, "PointCloud2": PointCloud2}
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class CharmNode(LifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("charm", **kwargs)
        values = declare(self, PARAMETERS)
        sensors = checkpoint_sensors(values["model.checkpoint"])  # its metadata: a section per further sensor
        values.update(declare(self, parameters(sensors)[len(PARAMETERS):]))
        self.config = validate(values, sensors)
        self.state = "unconfigured"
        self.start_error: Exception = RuntimeError("a lifecycle transition at start failed (see the log)")
        self.engine: Engine | None = None
        self.enabled = threading.Event()
        self.enabled.set()
        self.stopping = threading.Event()
        self.worker: threading.Thread | None = None
        self.subs: list = []
        self.pubs: dict = {}  # output name -> lifecycle publisher (made at configure)
        self.topic_sensor: dict[str, str] = {}  # resolved input topic -> the sensor it feeds
        self.camera_info_topics: dict[str, str] = {}  # sensor -> resolved CameraInfo topic
        self.latched_info = LatchedCameraInfo(self, self.camera_info_topics, self._on_camera_info)
        self.qos = QosWatch(self, self.config["qos.silent_after"])
        self.qos_warnings: tuple[dict, dict] = ({}, {})
        self.last_state: tuple | None = None  # (lifecycle state, level, alive sensors) last reported
        self.last_diag_time = 0.0
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(SetBool, "~/enable", self._on_enable)
        # steady time: diagnostics keep coming when the ROS clock does not move (use_sim_time, no /clock)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(min(0.25, self.config["diagnostics.period"]), self._diagnostics_tick, clock=steady)
        self.create_timer(0.5, self._watch_graph, clock=steady)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if self.config["autostart"]:
            for step in (self.trigger_configure, self.trigger_activate):
                if step() != SUCCESS:
                    raise self.start_error

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state) -> TransitionCallbackReturn:
        if not self._load_model():
            return FAILURE
        qos = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST,
                         reliability=RELIABILITY[self.config["qos.output_reliability"]])
        for name, kind in [*OUTPUT_TYPES.items(), ("labels", "String")]:
            topic = self.resolve_topic_name(f"~/{name}")
            profile = LATCHED if name == "labels" else qos
            self.pubs[name] = self.create_lifecycle_publisher(MESSAGE_TYPES[kind], topic, profile,
                                                              event_callbacks=self.qos.publisher_events(topic))
            self.qos.add_output(topic, MESSAGE_TYPES[kind], profile)
        return self._entered("inactive")

    def on_activate(self, state) -> TransitionCallbackReturn:
        if self.engine is None and not self._load_model():  # deactivate released it
            return FAILURE
        self._subscribe()
        super().on_activate(state)  # the lifecycle publishers
        self.pubs["labels"].publish(labels_message(self.engine.predictor.class_names, self.engine.palette))
        self.stopping = threading.Event()
        self.worker = threading.Thread(target=self._work, args=(self.engine, self.stopping), name="charm_inference",
                                       daemon=True)
        self.worker.start()
        return self._entered("active")

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._stop()
        super().on_deactivate(state)
        return self._entered("inactive")

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._release_model()
        for pub in self.pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self.pubs.clear()
        self.qos.outputs.clear()
        return self._entered("unconfigured")

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self._stop()
        self.on_cleanup(state)
        return self._entered("finalized")

    def on_error(self, state) -> TransitionCallbackReturn:
        self.get_logger().error(f"a transition from {state.label} failed: releasing everything")
        self._stop()
        return self.on_cleanup(state)

    def _entered(self, state: str) -> TransitionCallbackReturn:
        self.state = state
        self.get_logger().info(f"lifecycle: {state}")
        return SUCCESS

    def _load_model(self) -> bool:
        cfg = self.config
        try:
            predictor = Predictor.from_checkpoint(cfg.checkpoint, device=cfg["model.device"],
                                                  precision=cfg["model.precision"], backend=cfg["model.backend"])
            self.engine = Engine(predictor, cfg)
            # graphs for every subset the enabled sensors can form, built while frames already run on torch
            predictor.prepare(all_subsets(tuple(m for m in predictor.modalities if m in cfg.enabled)),
                              self.engine.input_size, background=True)
        except (ValueError, OSError) as exc:
            self.start_error = exc  # autostart: run_node reports it and exits 2
            if not (self.config["autostart"] and self.state == "unconfigured"):
                self.get_logger().error(f"cannot load the model: {exc}")
            return False
        size = self.engine.input_size
        self.get_logger().info(f"CHARM on {predictor.device} ({predictor.precision}), input {size[0]}x{size[1]}, "
                               f"modalities {', '.join(cfg.enabled)}, checkpoint {cfg.checkpoint}")
        return True

    def _release_model(self) -> None:
        """Drop the Engine (model, buffers) and give its memory back: CUDA's cache, the C heap's free pages."""
        if self.engine is None:
            return
        device, self.engine = self.engine.predictor.device, None
        release_memory(device)

    def _subscribe(self) -> None:
        cfg = self.config
        sensor_qos = QoSProfile(depth=cfg["qos.input_depth"], history=HistoryPolicy.KEEP_LAST,
                                reliability=RELIABILITY[cfg["qos.input_reliability"]])
        for m in cfg.enabled:
            topic = self.resolve_topic_name(cfg.topics[m])
            msg_type = PointCloud2 if m == "lidar" else (
                CompressedImage if compressed.is_transport_topic(topic) else Image)
            self._subscribe_input(msg_type, topic, m, lambda msg, m=m: self._on_sensor(m, msg), sensor_qos)
        for m in cfg.camera_info_topics:
            if m in cfg.enabled or m == "rgb":
                topic = self.resolve_topic_name(cfg.camera_info_topics[m])
                self._subscribe_input(CameraInfo, topic, m, lambda msg, m=m: self._on_camera_info(m, msg), sensor_qos)
                self.camera_info_topics[m] = topic

    def _subscribe_input(self, msg_type, topic: str, sensor: str, callback, qos: QoSProfile) -> None:
        def on_message(msg) -> None:
            self.qos.received(topic)
            callback(msg)
        self.subs.append(self.create_subscription(msg_type, topic, on_message, qos,
                                                  event_callbacks=self.qos.subscription_events(topic)))
        self.topic_sensor[topic] = sensor
        self.qos.add_input(topic, sensor, msg_type, qos)

    def _stop(self) -> None:
        """Stop the worker, unsubscribe, free the model (the active -> inactive part of any transition)."""
        self.shutdown()
        for sub in self.subs:
            self.destroy_subscription(sub)
        self.subs = []
        self.latched_info.close()
        self.topic_sensor.clear()
        self.camera_info_topics.clear()
        self.qos.clear_inputs()
        self._release_model()

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        (self.enabled.set if request.data else self.enabled.clear)()
        response.success = True
        response.message = f"inference {'enabled' if request.data else 'paused'}" + (
            "" if self.state == "active" else f" (the node is {self.state}: it applies once active)")
        self.get_logger().info(response.message)
        return response

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

    def _watch_graph(self) -> None:
        """QoS diagnostics (charm_ros.qos_watch) and CameraInfo latched before the node subscribed."""
        engine = self.engine
        calibrated = {t for m, t in self.camera_info_topics.items() if engine is not None and engine.has_camera(m)}
        warnings = self.qos.check(quiet_ok=calibrated)
        # logged when a topic starts being warned about (its text, e.g. a silence's length, changes by itself)
        before = {*self.qos_warnings[0], *self.qos_warnings[1]}
        for topic, text in {**warnings[0], **warnings[1]}.items():
            if topic not in before:
                self.get_logger().warning(f"QoS: {text}")
        self.qos_warnings = warnings
        if self.state == "active":
            self.latched_info.poll(self.engine.has_camera)

    def on_undecodable(self, topic: str, error: Exception) -> None:
        """rclpy could not convert a received message (see run_node.TolerantExecutor)."""
        sensor = self.topic_sensor.get(topic)
        if sensor is not None and self.engine is not None:
            self.engine.reject(sensor, f"undecodable message on {topic}: {error}", self.now())
        self.get_logger().warning(f"dropped an undecodable message on {topic}: {error}", throttle_duration_sec=5.0)

    # ------------------------------------------------------------------ worker: newest frame wins
    def _work(self, engine: Engine, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                self._step(engine)
            except Exception as exc:
                if stopping.is_set() or not self.context.ok():
                    return  # Ctrl-C shut the context down under us: nothing is left to publish to
                # a bug must not leave the node up but silent: reported, and the next frame tried
                self.get_logger().error(f"inference step failed: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=5.0)

    def _step(self, engine: Engine) -> None:
        running = self.enabled.is_set()
        frames = engine.due(self.now(), latest=running, wait_s=0.005)  # paused: taken and let go, not counted
        if not running or not frames or not any(self.pubs[n].get_subscription_count() > 0 for n in OUTPUT_TYPES):
            return
        try:
            result = engine.run(frames[-1], self.now())
        except FrameSkipped as exc:
            self.get_logger().warning(f"frame skipped: {exc}", throttle_duration_sec=5.0)
            return
        except ModelFailure as exc:
            self.get_logger().error(f"inference failed: {exc}", throttle_duration_sec=5.0)
            return
        cfg = engine.config
        wanted = [name for name in OUTPUT_TYPES if cfg.outputs[name] and self.pubs[name].get_subscription_count() > 0]
        for name, msg in output_messages(result, wanted, engine.palette, cfg["outputs.overlay_alpha"]).items():
            self.pubs[name].publish(msg)
        engine.published(result, self.now())

    # ------------------------------------------------------------------ diagnostics
    def _clock_error(self) -> str:
        clock = self.get_clock()
        if clock.ros_time_is_active and clock.now().nanoseconds == 0:
            return ("use_sim_time is true but no /clock has arrived: sensor liveness and sync timeouts "
                    "cannot advance (play the bag with --clock, or set use_sim_time false)")
        return ""

    def _diagnostics_tick(self) -> None:
        engine, (sensor_qos, output_qos) = self.engine, self.qos_warnings
        if self.state == "active" and engine is not None:
            reports = assess(engine.health(self.now(), self._clock_error(), self.camera_info_topics.values(),
                                           sensor_qos, output_qos, paused=not self.enabled.is_set()))
        else:
            reports = idle_reports(self.state, output_qos)
        pipeline = reports[0]
        # A change is a sensor dying or returning, the level or lifecycle state changing; not the per-frame
        # subset, which alternates by design when a faster reference outruns its partners (30 Hz RGB, 10 Hz LiDAR).
        state = (self.state, pipeline.level, pipeline.values.get("alive"), pipeline.values.get("enabled"))
        due = time.monotonic() - self.last_diag_time >= self.config["diagnostics.period"]
        if not due and state == self.last_state:
            return
        if state != self.last_state:
            if pipeline.level == OK:  # two call sites: rclpy fixes a call site's severity at its first use
                self.get_logger().info(pipeline.message)
            else:
                self.get_logger().warning(pipeline.message)
        self.last_state, self.last_diag_time = state, time.monotonic()
        self.diag_pub.publish(diagnostics_message(reports, self.get_fully_qualified_name(),
                                                  self.get_clock().now().to_msg()))

    # ------------------------------------------------------------------ run-time parameter changes
    def _on_set_parameters(self, params) -> SetParametersResult:
        specs = self.config.specs
        ours = [p for p in params if p.name in specs]
        try:
            for p in ours:
                if not specs[p.name].dynamic:
                    raise ConfigError(f"{p.name} can only be set at start")
                specs[p.name].check(p.value)
            new = validate({**self.config.raw, **{p.name: p.value for p in ours}}, self.config.sensors)
            engine = self.engine
            if engine is not None and engine.reconfigure(new) and self.state == "active":
                self.pubs["labels"].publish(labels_message(engine.predictor.class_names, engine.palette))
            self.config = new
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def shutdown(self) -> None:
        """Stop the inference worker (also what run_node calls at exit)."""
        self.stopping.set()
        if self.worker is not None:
            self.worker.join(timeout=5.0)
            self.worker = None


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
