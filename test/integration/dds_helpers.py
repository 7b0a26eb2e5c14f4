"""Helpers of the DDS tests (plain functions and classes; the fixtures are in conftest.py): waiting on a
condition, recording what the node publishes, starting the node and sensor publishers."""
from __future__ import annotations

import math
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from charm_ros.runtime.parameters import load_param_file
from charm_ros.tools.launcher import NodeSpec, resolve_executable
from support import ROOT

NODES = Path(__file__).resolve().parent / "nodes"   # helper processes: sensor publishers, relays, probes
MODALITIES = ("rgb", "depth", "event", "lidar")
OK_LEVEL = 0
PARAMS = ROOT / "config" / "charm.param.yaml"
# how long a sensor may be silent before the node runs without it (the shipped parameters)
STALE_TIMEOUT_S = max(load_param_file(PARAMS)[f"{m}.stale_timeout"] for m in MODALITIES)
# What a loaded 2-core machine may add to a reaction the node makes in well under a second (a switch of
# subset, a first mask, a status): generous, so that only a node that does not react at all fails.
MARGIN_S = 5.0


def wait_until(check, timeout: float):
    """The first truthy value `check()` returned within `timeout` s (polled every 50 ms), else False."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    return False


@dataclass
class Recorder:
    """What the test process sees of the node's outputs."""

    masks: list[tuple[float, float, str]] = field(default_factory=list)   # (arrival, stamp, frame_id)
    subsets: list[tuple[float, str]] = field(default_factory=list)
    diagnostics: list[tuple[float, int, str]] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)
    pipeline_values: dict[str, str] = field(default_factory=dict)  # of the last pipeline status
    mask_shape: tuple | None = None
    info_shape: tuple | None = None
    labels: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def subset_at_end(self) -> str | None:
        with self.lock:
            return self.subsets[-1][1] if self.subsets else None

    def masks_between(self, t0: float, t1: float) -> list[tuple[float, float, str]]:
        with self.lock:
            return [m for m in self.masks if t0 <= m[0] < t1]

    def wait_subset(self, subset: str, since: float, timeout: float) -> float | None:
        """Seconds from `since` until ~/subset said `subset` (None if it never did)."""
        def arrivals() -> list[float]:
            with self.lock:
                return [t for t, s in self.subsets if t >= since and s == subset]
        hit = wait_until(arrivals, timeout)
        return hit[0] - since if hit else None

    def wait_masks(self, count: int, since: float, timeout: float) -> bool:
        """Whether `count` masks arrived after `since` within `timeout` s."""
        return bool(wait_until(lambda: len(self.masks_between(since, math.inf)) >= count, timeout))

    def wait_level(self, level: int, since: float, timeout: float) -> str | None:
        """The first pipeline status message at `level` after `since` (None if none came)."""
        def messages() -> list[str]:
            with self.lock:
                return [m for t, lv, m in self.diagnostics if t >= since and lv == level]
        hit = wait_until(messages, timeout)
        return hit[0] if hit else None

    def subsets_since(self, since: float) -> list[str]:
        with self.lock:
            return [s for t, s in self.subsets if t >= since]

    def wait_subsets(self, count: int, since: float, timeout: float) -> list[str]:
        """The ~/subset messages after `since` once `count` came (fewer if `timeout` s passed first)."""
        wait_until(lambda: len(self.subsets_since(since)) >= count, timeout)
        return self.subsets_since(since)


def subscribe(node, rec: Recorder) -> None:
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

    def on_mask(msg: Image) -> None:
        with rec.lock:
            rec.masks.append((time.monotonic(), msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9,
                              msg.header.frame_id))
            rec.mask_shape = (msg.height, msg.width, msg.encoding)

    def on_subset(msg: String) -> None:
        with rec.lock:
            rec.subsets.append((time.monotonic(), msg.data))

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            with rec.lock:
                if status.name.endswith(": pipeline"):
                    rec.diagnostics.append((time.monotonic(), status.level[0], status.message))
                    rec.pipeline_values = values
                elif "rejected" in values:
                    rec.rejected[status.name.rsplit(": ", 1)[1]] = int(values["rejected"])

    def on_info(msg: CameraInfo) -> None:
        rec.info_shape = (msg.height, msg.width)

    def on_labels(msg: String) -> None:
        rec.labels = msg.data

    node.create_subscription(Image, "/charm/mask", on_mask, reliable)
    node.create_subscription(String, "/charm/subset", on_subset, reliable)
    node.create_subscription(CameraInfo, "/charm/camera_info", on_info, reliable)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    node.create_subscription(String, "/charm/labels", on_labels,
                             QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                        durability=DurabilityPolicy.TRANSIENT_LOCAL))


def node_on(checkpoint, prefix: str, sensors: tuple[str, ...]) -> NodeSpec:
    """The charm node with only `sensors` enabled, reading them (and their CameraInfo) under `prefix`."""
    inputs = [f"{m}/points" if m == "lidar" else f"{m}/image" for m in sensors] + [
        f"{m}/camera_info" for m in sensors if m in ("rgb", "depth")]
    return NodeSpec(command=[resolve_executable("charm_node")], name="charm",
                    params_files=[str(PARAMS)],
                    parameters={"model.checkpoint": str(checkpoint), "model.backend": "torch",
                                **{f"{m}.enabled": False for m in MODALITIES if m not in sensors}},
                    remappings=[(f"~/{topic}", f"{prefix}/{topic}") for topic in inputs])


def publish(frames_npz, modality: str, prefix: str, env: dict[str, str], *flags: str) -> subprocess.Popen:
    """A sensor_publisher process for one modality under `prefix`."""
    return subprocess.Popen([sys.executable, str(NODES / "sensor_publisher.py"), str(frames_npz), modality,
                             "--prefix", prefix, *flags], env=env, start_new_session=True)


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def max_gap(masks) -> float:
    arrivals = [m[0] for m in masks]
    return max(np.diff(arrivals)) if len(arrivals) > 1 else float("inf")


def call(client, request, timeout: float = 30.0):
    """A service's answer (the probe node's executor spins it)."""
    assert client.wait_for_service(timeout_sec=timeout), f"no service {client.srv_name}"
    future = client.call_async(request)
    assert wait_until(future.done, timeout), f"{client.srv_name} did not answer"
    return future.result()


class Statuses:
    """Every DiagnosticStatus seen: (arrival, short name, level, message)."""

    def __init__(self, node) -> None:
        self.seen: list[tuple[float, str, int, str]] = []
        self.lock = threading.Lock()
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on, 10)

    def _on(self, msg: DiagnosticArray) -> None:
        with self.lock:
            self.seen += [(time.monotonic(), s.name.rsplit(": ", 1)[1], s.level[0], s.message) for s in msg.status]

    def first(self, name: str, since: float, timeout: float, check) -> tuple[float, int, str] | None:
        """(seconds after `since`, level, message) of the first `name` status after `since` passing `check`."""
        def hit():
            with self.lock:
                return next(((t - since, lv, m) for t, n, lv, m in self.seen
                             if t >= since and n == name and check(lv, m)), None)
        return wait_until(hit, timeout) or None


class Seen:
    """Counts the messages of one topic as the test's probe node receives them (e.g. a sensor's frames,
    to wait until the node had input to act on instead of sleeping)."""

    def __init__(self, node, msg_type, topic: str, qos) -> None:
        self.arrivals: list[float] = []
        self.lock = threading.Lock()
        node.create_subscription(msg_type, topic, self._on, qos)

    def _on(self, msg) -> None:
        with self.lock:
            self.arrivals.append(time.monotonic())

    def count_since(self, since: float) -> int:
        with self.lock:
            return sum(t >= since for t in self.arrivals)

    def wait(self, count: int, since: float, timeout: float = 30.0) -> bool:
        """Whether `count` messages came after `since` within `timeout` s."""
        return bool(wait_until(lambda: self.count_since(since) >= count, timeout))
