"""The `charm` node: synchronize whichever sensors are alive, run CHARM on that subset, publish masks.

A managed lifecycle node: configure loads the model and the ROS-free Engine (charm_ros.runtime),
activate subscribes and starts the inference worker, deactivate stops it and frees the model's
memory, cleanup drops the outputs; `autostart` (default) goes to active at start. `~/enable`
(std_srvs/SetBool) pauses and resumes inference without a transition. Wiring only: subscriptions
(charm_ros.node.topics) feed the Engine, its InferenceWorker runs the newest frame and publishes the
messages charm_ros.msgs.outputs builds; timers publish the Engine's health and what the ROS graph
says about the node's topics (charm_ros.node.qos_watch).
"""
from __future__ import annotations

import functools
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo
from std_srvs.srv import SetBool

from charm_core.inference import release_memory
from charm_ros.msgs import camera_info, fields
from charm_ros.msgs.outputs import diagnostics_message
from charm_ros.node.topics import NodeInputs, NodeOutputs
from charm_ros.node.qos_watch import QosWatch
from charm_ros.node.host import declare, run_node
from charm_ros.runtime.engine import Engine
from charm_ros.runtime.health import OK, ReportSchedule, assess, clock_error, idle_reports
from charm_ros.runtime.node_config import PARAMETERS, ConfigError, checkpoint_sensors, parameters, topics_help, validate
from charm_ros.runtime.worker import InferenceWorker

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
        self.worker: InferenceWorker | None = None
        self.enabled = threading.Event()  # cleared by ~/enable: inference paused
        self.enabled.set()
        self.qos = QosWatch(self, self.config.qos.silent_after)
        self.inputs = NodeInputs(self, self.qos, self._on_sensor, self._on_camera_info)
        self.outputs = NodeOutputs(self, self.qos)
        self.schedule = ReportSchedule(self.config.diagnostics_period)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(SetBool, "~/enable", self._on_enable)
        # steady time: diagnostics keep coming when the ROS clock does not move (use_sim_time, no /clock)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(min(0.25, self.config.diagnostics_period), self._diagnostics_tick, clock=steady)
        self.create_timer(0.5, self._watch_graph, clock=steady)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if self.config.autostart:
            for step in (self.trigger_configure, self.trigger_activate):
                if step() != SUCCESS:
                    raise self.start_error

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state) -> TransitionCallbackReturn:
        if not self._load_model():
            return FAILURE
        self.outputs.open(self.config)
        return self._entered("inactive")

    def on_activate(self, state) -> TransitionCallbackReturn:
        if self.engine is None and not self._load_model():  # deactivate released it
            return FAILURE
        self.inputs.open(self.config)
        super().on_activate(state)  # the lifecycle publishers
        self.outputs.publish_labels(self.engine)
        self.worker = InferenceWorker(self.engine, self.now, self.outputs.listened,
                                      functools.partial(self.outputs.publish, self.engine), self._report,
                                      self.enabled, self.context.ok)
        self.worker.start()
        return self._entered("active")

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._stop()
        super().on_deactivate(state)
        return self._entered("inactive")

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._release_model()
        self.outputs.close()
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
        try:
            self.engine = Engine.load(self.config)
        except (ValueError, OSError) as exc:
            self.start_error = exc  # autostart: run_node reports it and exits 2
            if not (self.config.autostart and self.state == "unconfigured"):
                self.get_logger().error(f"cannot load the model: {exc}")
            return False
        self.get_logger().info(self.engine.describe())
        return True

    def _release_model(self) -> None:
        """Drop the Engine (model, buffers) and give its memory back: CUDA's cache, the C heap's free pages."""
        if self.engine is None:
            return
        device, self.engine = self.engine.predictor.device, None
        release_memory(device)

    def _stop(self) -> None:
        """Stop the worker, unsubscribe, free the model (the active -> inactive part of any transition)."""
        self.shutdown()
        self.inputs.close()
        self._release_model()

    def shutdown(self) -> None:
        """Stop the inference worker (also what run_node calls at exit)."""
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

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
        except fields.ConversionError as exc:
            self.get_logger().warning(f"rejected {sensor} message: {exc}", throttle_duration_sec=5.0)
        while self.engine.content_events:  # a content fault entered or recovered: logged once
            verdict = self.engine.content_events.popleft()
            # two call sites: rclpy refuses one call site logging at two severities (ValueError, the node dies)
            if verdict.fault.kind:
                self.get_logger().warning(verdict.text())
            else:
                self.get_logger().info(verdict.text())

    def _on_camera_info(self, sensor: str, msg: CameraInfo) -> None:
        try:
            changed = self.engine.accept_camera_info(sensor, msg)
        except fields.ConversionError as exc:
            self.get_logger().warning(f"rejected {sensor} CameraInfo: {exc}", throttle_duration_sec=5.0)
            return
        if changed:
            self.get_logger().info(f"{sensor} camera: {camera_info.camera_info_summary(msg)}")

    def on_undecodable(self, topic: str, error: Exception) -> None:
        """rclpy could not convert a received message (see run_node.TolerantExecutor)."""
        sensor = self.inputs.topic_sensor.get(topic)
        if sensor is not None and self.engine is not None:
            self.engine.reject(sensor, f"undecodable message on {topic}: {error}", self.now())
        self.get_logger().warning(f"dropped an undecodable message on {topic}: {error}", throttle_duration_sec=5.0)

    def _on_set_parameters(self, params) -> SetParametersResult:
        try:
            new = self.config.updated({p.name: p.value for p in params})
            if self.engine is not None and self.engine.reconfigure(new) and self.state == "active":
                self.outputs.publish_labels(self.engine)  # the palette changed
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.config = new
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ the worker's reports
    def _report(self, level: str, text: str) -> None:
        if level == "warning":  # two call sites: rclpy fixes a call site's severity at its first use
            self.get_logger().warning(text, throttle_duration_sec=5.0)
        else:
            self.get_logger().error(text, throttle_duration_sec=5.0)

    # ------------------------------------------------------------------ timers: the graph and /diagnostics
    def _watch_graph(self) -> None:
        """QoS diagnostics (charm_ros.node.qos_watch) and CameraInfo latched before the node subscribed."""
        engine = self.engine
        self.qos.update(quiet_ok={t for m, t in self.inputs.camera_info_topics.items()
                                  if engine is not None and engine.has_camera(m)})
        if self.state == "active":
            self.inputs.poll_latched(self.engine.has_camera)

    def _diagnostics_tick(self) -> None:
        engine, (sensor_qos, output_qos) = self.engine, self.qos.warnings
        if self.state == "active" and engine is not None:
            clock = self.get_clock()
            reports = assess(engine.health(self.now(), clock_error(clock.ros_time_is_active, clock.now().nanoseconds),
                                           self.inputs.camera_info_topics.values(), sensor_qos, output_qos,
                                           paused=not self.enabled.is_set()))
        else:
            reports = idle_reports(self.state, output_qos)
        publish, changed = self.schedule.due(self.state, reports, time.monotonic())
        if changed:
            if reports[0].level == OK:
                self.get_logger().info(reports[0].message)
            else:
                self.get_logger().warning(reports[0].message)
        if publish:
            self.diag_pub.publish(diagnostics_message(reports, self.get_fully_qualified_name(),
                                                      self.get_clock().now().to_msg()))


def main(args: list[str] | None = None) -> int:
    # One executor thread: callbacks are short. rclpy's MultiThreadedExecutor with a busy mutually
    # exclusive group was seen spinning on the GIL and starving every subscription for seconds.
    return run_node(CharmNode, "charm", args, parameters=PARAMETERS, summary=f"{__doc__}\n{topics_help()}")


if __name__ == "__main__":
    sys.exit(main())
