"""The live node's inference worker and diagnostics schedule, without ROS: newest frame wins, a pause
takes frames without counting them, nothing runs unheard, a failing frame never ends the thread."""
import threading
import time

import pytest

from charm_core.data.synthetic import World
from charm_core.inference import Predictor
from charm_ros.msgs import images, pointclouds
from charm_ros.runtime.engine import Engine
from charm_ros.runtime.health import OK, WARN, ReportSchedule, StatusReport, clock_error
from charm_ros.runtime.node_config import ConfigError, validate
from charm_ros.runtime.worker import InferenceWorker

RGB_ONLY = {"model.input_size": [64, 64], "depth.enabled": False, "event.enabled": False, "lidar.enabled": False}


@pytest.fixture(scope="module")
def predictor(random_checkpoint):
    return Predictor.from_checkpoint(random_checkpoint, device="cpu", backend="torch")


@pytest.fixture(scope="module")
def rgb():
    return World(seed=3, size_hw=(48, 64)).frame_at(1.0).rgb


CLOCK = [0.0]  # the worker's clock: just after the last message fed


def feed(engine: Engine, rgb, stamps) -> None:
    for t in stamps:
        CLOCK[0] = t + 0.05
        msg = images.numpy_to_image(rgb, "rgb8", frame_id="cam")
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(t), int(round((t % 1) * 1e9))
        engine.accept("rgb", msg, t)


class Recorder:
    def __init__(self, engine, listened=("mask", "overlay"), fail_first: int = 0):
        self.published, self.reports, self.fail_first = [], [], fail_first
        self.enabled = threading.Event()
        self.enabled.set()
        self.worker = InferenceWorker(engine, lambda: CLOCK[0], lambda: list(listened), self.publish,
                                      lambda level, text: self.reports.append((level, text)), self.enabled)

    def publish(self, result, names):
        if self.fail_first > 0:
            self.fail_first -= 1
            raise RuntimeError("publisher gone")
        self.published.append((result.frame.stamp, names))


def test_the_newest_frame_runs_and_the_older_ones_are_counted_as_dropped(predictor, rgb):
    engine = Engine(predictor, validate({**RGB_ONLY, "outputs.overlay": False}))
    rec = Recorder(engine)
    feed(engine, rgb, [1.0, 1.1, 1.2])
    result = rec.worker.step()
    assert result is not None and result.frame.stamp == pytest.approx(1.2)
    assert rec.published == [(pytest.approx(1.2), ["mask"])], "only the enabled outputs someone listens to"
    assert engine.counters.frames == 1 and engine.counters.frames_dropped == 2
    assert rec.worker.step() is None, "nothing due"


def test_paused_frames_are_taken_not_counted_and_unheard_frames_not_run(predictor, rgb):
    engine = Engine(predictor, validate(RGB_ONLY))
    rec = Recorder(engine)
    rec.enabled.clear()
    feed(engine, rgb, [1.0, 1.1])
    assert rec.worker.step() is None and rec.published == []
    assert engine.counters.frames_dropped == 0 and engine.due(CLOCK[0]) == [], "taken and let go"
    unheard = Recorder(engine, listened=())
    feed(engine, rgb, [2.0])
    assert unheard.worker.step() is None and engine.counters.in_frames["rgb"] == 0, "the model never ran"


def test_a_failing_publish_is_reported_and_the_thread_goes_on(predictor, rgb):
    engine = Engine(predictor, validate(RGB_ONLY))
    rec = Recorder(engine, fail_first=1)
    rec.worker.start()
    try:
        for n, t in enumerate((1.0, 2.0, 3.0), start=1):
            feed(engine, rgb, [t])
            deadline = time.monotonic() + 10.0
            while engine.counters.frames + len(rec.reports) < n and time.monotonic() < deadline:
                time.sleep(0.01)  # frame n published, or its failure reported
    finally:
        rec.worker.stop()
    assert rec.reports and rec.reports[0] == ("error", "inference step failed: RuntimeError: publisher gone")
    assert [stamp for stamp, _ in rec.published] == [2.0, 3.0]
    assert rec.worker.thread is None


def test_a_frame_the_encoders_refuse_is_a_warning_not_the_end(predictor, rgb):
    engine = Engine(predictor, validate({**RGB_ONLY, "lidar.enabled": True, "sync.reference_priority": ["lidar"]}))
    rec = Recorder(engine)
    cloud = pointclouds.xyzi_to_pointcloud2(World(seed=3, size_hw=(48, 64)).frame_at(1.0).lidar, frame_id="lidar")
    cloud.header.stamp.sec = 1
    engine.accept("lidar", cloud, 1.0)  # LiDAR alone and no CameraInfo: nothing to encode
    CLOCK[0] = 1.05
    assert rec.worker.step() is None
    assert rec.reports[0][0] == "warning" and "no CameraInfo" in rec.reports[0][1]
    assert engine.counters.frames_skipped == 1


def report(level, alive="rgb"):
    return [StatusReport("charm: pipeline", level, "m", {"alive": alive, "enabled": "rgb"})]


def test_diagnostics_go_out_every_period_and_at_once_on_a_change():
    schedule = ReportSchedule(1.0)
    assert schedule.due("active", report(OK), 0.0) == (True, True)
    assert schedule.due("active", report(OK), 0.5) == (False, False)
    assert schedule.due("active", report(WARN, alive=""), 0.6) == (True, True), "a sensor died"
    assert schedule.due("active", report(WARN, alive=""), 1.7) == (True, False), "the period"
    assert schedule.due("inactive", report(WARN, alive=""), 1.8) == (True, True), "the lifecycle state"
    qos = [*report(WARN, alive=""), StatusReport("charm: rgb", WARN, "/rgb: a QoS mismatch", {})]
    assert schedule.due("inactive", qos, 1.9) == (True, False), "a sensor's level: at once, no log line"
    assert schedule.due("inactive", qos, 2.0) == (False, False)


def test_a_sim_clock_that_never_came_is_named():
    assert "no /clock has arrived" in clock_error(True, 0)
    assert clock_error(True, 5) == "" and clock_error(False, 0) == ""


def test_run_time_parameter_changes_are_checked_against_their_specs():
    config = validate(RGB_ONLY)
    assert config.updated({"outputs.overlay_alpha": 0.25, "use_sim_time": True}).overlay_alpha == 0.25
    with pytest.raises(ConfigError, match="model.checkpoint can only be set at start"):
        config.updated({"model.checkpoint": "other.safetensors"})
    with pytest.raises(ConfigError, match="overlay_alpha"):
        config.updated({"outputs.overlay_alpha": 2.0})
    assert config.overlay_alpha == 0.5, "the config itself is unchanged"
