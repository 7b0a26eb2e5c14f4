"""Sensors that lie, over real DDS: the node in its own process, four sensors published from this test
with fresh stamps and content faulted by charm_ros.runtime.faults (the rig's `faulted_frame`). A frozen
depth (exact and with jitter) and a frozen LiDAR leave ~/subset and return, their /diagnostics status WARN
naming the fault while out and OK after; an overexposed RGB (a DELIVER case) and every sensor frozen
together (a parked robot) exclude nothing.

The bounds are behaviour on a loaded 2-core machine (the node reacts in well under a second: how fast is
bench/live_faults.py's table in docs/benchmarks/, not asserted here)."""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import replace

import pytest
from builtin_interfaces.msg import Time
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from charm_core.data.synthetic import World
from charm_ros.runtime.faults import FaultInjector, parse_faults
from charm_ros.tools.launcher import Launcher
from charm_ros.tools.sim_rig import INFO_TOPICS, SENSOR_TOPICS, RigEncoding, faulted_frame, frame_messages
from dds_helpers import MARGIN_S, MODALITIES, OK_LEVEL, Recorder, Statuses, node_on, subscribe, wait_until

PREFIX = "/faults"
FOUR = "+".join(MODALITIES)
FPS, FRAMES, FAULT_S = 10.0, 20, 3.0
WARN_LEVEL = 1
REACT_S = 3.0 + MARGIN_S   # generous: the node leaves a sensor out or takes it back in well under a second


@pytest.fixture(scope="module")
def drives() -> dict[str | None, list]:
    """The drive's first 2 s (looped by the publisher), clean and overexposed."""
    return {case: list(World(seed=21, size_hw=(256, 256), case=case).frames(FRAMES))
            for case in (None, "overexposure")}


class LyingRig:
    """Four sensors at 10 Hz from the test process; `fault()` scripts one fault window at a time."""

    def __init__(self, node, drives: dict) -> None:
        qos = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)
        types = {SENSOR_TOPICS["lidar"]: PointCloud2, **{t: CameraInfo for t in INFO_TOPICS.values()}}
        topics = [SENSOR_TOPICS[m] for m in MODALITIES] + [INFO_TOPICS[m] for m in MODALITIES if m in INFO_TOPICS]
        self.pubs = {t: node.create_publisher(types.get(t, Image), f"{PREFIX}/{t}", qos) for t in topics}
        self.drives = drives
        self.lock = threading.Lock()
        self.injector, self.case, self.window = FaultInjector([]), None, (float("inf"), float("inf"))
        self.first_faulted = self.first_clean = None   # monotonic times of the window's first faulted / clean frame
        self.stopped = threading.Event()
        self.t0 = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def fault(self, faults: str = "", case: str | None = None) -> None:
        """`faults` ('depth:frozen,...') and/or rgb from `case` for FAULT_S s from the next frames on."""
        start = round((time.monotonic() - self.t0 + 0.2) * FPS) / FPS
        script = ",".join(f"{f}:{start:g}-{start + FAULT_S:g}" for f in faults.split(",") if f)
        with self.lock:
            self.injector = FaultInjector(parse_faults(script, MODALITIES))
            self.case, self.window = case, (start, start + FAULT_S)
            self.first_faulted = self.first_clean = None

    def _run(self) -> None:
        encoding = RigEncoding(frame_id="camera")
        for tick in itertools.count():
            if self.stopped.is_set():
                return
            t = tick / FPS
            time.sleep(max(0.0, self.t0 + t - time.monotonic()))
            with self.lock:
                faulted = self.window[0] <= t < self.window[1]
                frame = self.drives[None][tick % FRAMES]
                if faulted and self.case:
                    frame = replace(frame, rgb=self.drives[self.case][tick % FRAMES].rgb)
                frame = faulted_frame(frame, self.injector, t, MODALITIES)
                ns = time.time_ns()
                stamp = Time(sec=ns // 10**9, nanosec=ns % 10**9)
                for topic, msg in frame_messages(frame, stamp, MODALITIES, encoding).items():
                    if topic in self.pubs:
                        self.pubs[topic].publish(msg)
                if faulted and self.first_faulted is None:
                    self.first_faulted = time.monotonic()
                if t >= self.window[1] and self.first_clean is None:
                    self.first_clean = time.monotonic()


@pytest.fixture
def live(random_checkpoint, child_env, rclpy_node, drives):
    """The node on the lying rig, running on all four sensors; yields (rig, recorder, statuses)."""
    rec, statuses = Recorder(), Statuses(rclpy_node)
    subscribe(rclpy_node, rec)
    rig = LyingRig(rclpy_node, drives)
    with Launcher([node_on(random_checkpoint, PREFIX, MODALITIES)], env=child_env):
        try:
            assert rec.wait_subset(FOUR, 0.0, 90), "the node never ran on all four sensors"
            yield rig, rec, statuses
        finally:
            rig.stopped.set()
            rig.thread.join(timeout=5)


def settle(rec: Recorder, statuses: Statuses) -> None:
    """Wait for a clean, settled stream: ~/subset on every sensor and each sensor's status OK."""
    def settled() -> bool:
        with statuses.lock:
            last = {name: level for _, name, level, _ in statuses.seen}
        return rec.subset_at_end() == FOUR and all(last.get(m) == OK_LEVEL for m in MODALITIES)
    assert wait_until(settled, 30), f"not settled: subset {rec.subset_at_end()}"


@pytest.mark.parametrize("fault", ["depth:frozen", "depth:frozen_jitter", "lidar:frozen"])
def test_a_frozen_sensor_is_left_out_and_returns(live, fault):
    rig, rec, statuses = live
    sensor = fault.split(":")[0]
    settle(rec, statuses)
    rig.fault(fault)
    assert wait_until(lambda: rig.first_faulted, 5)
    out = rec.wait_subset("+".join(m for m in MODALITIES if m != sensor), rig.first_faulted, REACT_S)
    assert out is not None, f"{fault}: ~/subset still {rec.subset_at_end()} {REACT_S:g} s into the fault"
    warn = statuses.first(sensor, rig.first_faulted, REACT_S, lambda level, msg: level == WARN_LEVEL)
    assert warn is not None and "frozen" in warn[2] and "left out" in warn[2], warn
    assert wait_until(lambda: rig.first_clean, FAULT_S + 5)
    back = rec.wait_subset(FOUR, rig.first_clean, REACT_S)
    assert back is not None, f"{fault}: {sensor} not back {REACT_S:g} s after the fault ended"
    ok = statuses.first(sensor, rig.first_clean, REACT_S, lambda level, msg: level == OK_LEVEL)
    assert ok is not None, f"{sensor}'s status never OK again"


@pytest.mark.parametrize("faults, case", [("", "overexposure"), (",".join(f"{m}:frozen" for m in MODALITIES), None)],
                         ids=["overexposed_rgb", "parked_robot"])
def test_a_degraded_rgb_or_a_parked_robot_excludes_nothing(live, faults, case):
    rig, rec, statuses = live
    settle(rec, statuses)
    rig.fault(faults, case)
    assert wait_until(lambda: rig.first_clean, FAULT_S + 5)
    time.sleep(1.0)   # what the last faulted frames caused
    seen = rec.subsets_since(rig.first_faulted)
    assert len(seen) >= 3, "the node stopped running during the fault"
    assert set(seen) == {FOUR}, f"{faults or case}: a sensor was left out: {sorted(set(seen))}"
    with statuses.lock:
        excluded = [(name, msg) for t, name, level, msg in statuses.seen
                    if t >= rig.first_faulted and name in MODALITIES and "left out" in msg]
    assert not excluded, excluded
