"""The node over real DDS, every peer in its own process: rate, header, dropout and recovery, garbage."""
from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from charm_core.data.synthetic import World
from charm_ros.tools.launcher import Launcher, NodeSpec, resolve_executable
from conftest import NODES, ROOT

MODALITIES = ("rgb", "depth", "event", "lidar")
OK_LEVEL = 0
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def frames_npz(tmp_path_factory):
    """20 consecutive frames of the synthetic drive, rendered once for all publishers."""
    world = World(seed=21, size_hw=(256, 256))
    frames = list(world.frames(20))
    path = tmp_path_factory.mktemp("frames") / "frames.npz"
    np.savez(path, rgb=np.stack([f.rgb for f in frames]), depth=np.stack([f.depth for f in frames]),
             event=np.stack([f.event for f in frames]), K=frames[0].K,
             **{f"lidar_{i}": f.lidar for i, f in enumerate(frames)})
    return path


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
                    params_files=[str(ROOT / "config" / "charm.param.yaml")],
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


def sustainable_hz(latency: dict[str, float], source_hz: float = 10.0) -> float:
    """The mask rate to require: 9 Hz of a 10 Hz source (the target) where the node's own encode +
    forward medians leave room for it, else 85% of the rate they allow (a CPU too slow for the model
    at 10 Hz: 105 ms a forward on some 2-core VMs, 37 ms on others), and never above 90% of what the
    source sends. The node must never be the bottleneck beyond its own per-frame work."""
    return min(9.0, 0.85 * 1000.0 / max(1.0, latency["encode_ms"] + latency["inference_ms"]), 0.9 * source_hz)


def test_node_degrades_and_recovers_over_dds(frames_npz, random_checkpoint, child_env, rclpy_node):
    rec = Recorder()
    subscribe(rclpy_node, rec)
    node_spec = NodeSpec(
        command=[resolve_executable("charm_node")], name="charm",
        params_files=[str(ROOT / "config" / "charm.param.yaml")],
        parameters={"model.checkpoint": str(random_checkpoint), "model.backend": "torch"},
        remappings=[(f"~/{m}/image", f"/test/{m}/image") for m in ("rgb", "depth", "event")]
        + [("~/lidar/points", "/test/lidar/points"), ("~/rgb/camera_info", "/test/rgb/camera_info"),
           ("~/depth/camera_info", "/test/depth/camera_info")])
    publishers: dict[str, subprocess.Popen] = {}

    def start(modality: str, garbage: bool = False) -> subprocess.Popen:
        args = [sys.executable, str(NODES / "sensor_publisher.py"), str(frames_npz), modality]
        proc = subprocess.Popen(args + (["--garbage", "--rate", "20"] if garbage else []), env=child_env,
                                start_new_session=True)
        if not garbage:
            publishers[modality] = proc
        return proc

    def kill(modality: str) -> None:
        proc = publishers.pop(modality)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    launcher = Launcher([node_spec], env=child_env)
    garbage_procs: list[subprocess.Popen] = []
    try:
        launcher.start()
        for m in MODALITIES:
            start(m)
        assert rec.wait_subset("rgb+depth+event+lidar", 0.0, 30), "the node never ran on all four sensors"
        # ~/subset can match before ~/mask does (DDS discovers endpoints one by one; slow on a loaded machine)
        assert rec.wait_masks(5, time.monotonic(), 20), "~/subset arrives but ~/mask never does"

        # 1. four sensors at 10 Hz -> masks at >= 9 Hz carrying the input header
        time.sleep(1.0)
        t0 = time.monotonic()
        time.sleep(5.0)
        steady = rec.masks_between(t0, t0 + 5.0)
        with rec.lock:
            latency = {k: float(rec.pipeline_values[k]) for k in ("encode_ms", "inference_ms", "end_to_end_ms")}
        needed = sustainable_hz(latency)
        assert len(steady) / 5.0 >= needed, f"{len(steady) / 5.0:.1f} Hz (needed {needed:.1f}: {latency})"
        for _, stamp, frame_id in steady:
            assert frame_id == "camera"
            assert abs(stamp * 10 - round(stamp * 10)) < 1e-6, "mask stamp is not an input stamp"
        assert rec.mask_shape == (256, 256, "mono8") and rec.info_shape == (256, 256)
        assert len(json.loads(rec.labels)["classes"]) == 25
        with rec.lock:
            latency = {k: float(rec.pipeline_values[k]) for k in ("encode_ms", "inference_ms", "end_to_end_ms")}
        # per frame stamp -> publish > encode and > forward, so their medians keep that order
        assert 0 < latency["encode_ms"] < latency["end_to_end_ms"], latency
        assert 0 < latency["inference_ms"] < latency["end_to_end_ms"], latency

        # 2. depth dies -> rgb+event+lidar within 1 s, no gap > 1 s; it returns -> four again
        t_kill = time.monotonic()
        kill("depth")
        switch = rec.wait_subset("rgb+event+lidar", t_kill, 3.0)
        assert switch is not None and switch < 1.0, f"switched after {switch} s"
        time.sleep(2.0)
        assert max_gap(rec.masks_between(t_kill - 0.5, time.monotonic())) < 1.0
        t_back = time.monotonic()
        start("depth")
        assert rec.wait_subset("rgb+depth+event+lidar", t_back, 5.0) is not None

        # 3. everything dies -> ERROR diagnostics, the node stays up; sensors return -> masks again
        t_all = time.monotonic()
        for m in list(publishers):
            kill(m)
        assert rec.wait_level(2, t_all, 4.0) is not None, "no ERROR diagnostics with every sensor gone"
        assert launcher.poll()["charm"] is None, "the node died without sensors"
        t_return = time.monotonic()
        for m in MODALITIES:
            start(m)
        assert rec.wait_subset("rgb+depth+event+lidar", t_return, 10.0) is not None
        assert rec.wait_level(0, t_return, 5.0) is not None, "diagnostics never went back to OK"

        # 4. 10 s of garbage on every input next to the valid stream: alive and still segmenting
        t_garbage = time.monotonic()
        garbage_procs = [start(m, garbage=True) for m in MODALITIES]
        time.sleep(10.0)
        during = rec.masks_between(t_garbage + 1.0, t_garbage + 10.0)
        assert launcher.poll()["charm"] is None
        # 5 Hz beside 80 garbage messages/s where 10 Hz are sustained: the same share of what this machine sustains
        floor = min(5.0, 0.5 * len(steady) / 5.0)
        assert len(during) / 9.0 >= floor, f"only {len(during) / 9.0:.1f} Hz during the garbage (needed {floor:.1f})"
        assert rec.subset_at_end() == "rgb+depth+event+lidar"
        time.sleep(1.5)  # one more diagnostics period
        assert all(rec.rejected.get(m, 0) > 20 for m in MODALITIES), rec.rejected
    finally:
        for proc in list(publishers.values()) + garbage_procs:
            proc.kill()
            proc.wait()
        codes = launcher.stop()
    assert codes["charm"] in (0, -signal.SIGINT), f"node exit code {codes['charm']}"


def test_sim_time_without_a_clock_is_reported_not_silent(random_checkpoint, child_env, rclpy_node):
    """use_sim_time with nobody publishing /clock freezes the node clock (liveness, sync timeouts):
    /diagnostics must still come and say so."""
    rec = Recorder()
    subscribe(rclpy_node, rec)
    node_spec = NodeSpec(command=[resolve_executable("charm_node")], name="charm",
                         params_files=[str(ROOT / "config" / "charm.param.yaml")],
                         parameters={"model.checkpoint": str(random_checkpoint), "use_sim_time": True, "model.backend": "torch"})
    with Launcher([node_spec], env=child_env):
        message = rec.wait_level(2, 0.0, 30)
    assert message is not None and "/clock" in message, message


def test_a_camera_info_latched_before_the_node_started_is_taken(frames_npz, random_checkpoint, child_env,
                                                                 rclpy_node):
    """A calibration published once, latched (transient local), before the node subscribed, as a static
    CameraInfo publisher does: without it depth cannot be encoded and the node would publish nothing."""
    from charm_ros.msgs.camera_info import k_to_camera_info

    data = np.load(frames_npz)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    info_pub = rclpy_node.create_publisher(CameraInfo, "/latched/depth/camera_info", latched)
    info_pub.publish(k_to_camera_info(data["K"], data["depth"].shape[1:3]))
    rec = Recorder()
    subscribe(rclpy_node, rec)
    depth = publish(frames_npz, "depth", "/latched", child_env, "--no-camera-info")
    try:
        with Launcher([node_on(random_checkpoint, "/latched", ("depth",))], env=child_env):
            assert rec.wait_subset("depth", 0.0, 40), "depth never segmented: the latched CameraInfo was missed"
            assert rec.wait_masks(5, time.monotonic(), 20)
    finally:
        stop([depth])


def test_parameters_change_at_run_time_through_the_parameter_service(frames_npz, random_checkpoint, child_env,
                                                                     rclpy_node):
    """What `ros2 param set` does: a valid palette recolours ~/color_mask and re-latches ~/labels; a bad
    one, or a read-only parameter, is refused with the reason."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    latest: dict[str, object] = {}
    rclpy_node.create_subscription(String, "/charm/labels", lambda m: latest.__setitem__("labels", json.loads(m.data)),
                                   QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                              durability=DurabilityPolicy.TRANSIENT_LOCAL))
    rclpy_node.create_subscription(Image, "/charm/color_mask", lambda m: latest.__setitem__("colour", m),
                                   QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE))
    client = rclpy_node.create_client(SetParameters, "/charm/set_parameters")

    def set_param(name: str, value) -> tuple[bool, str]:
        pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value) if isinstance(value, str) \
            else ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
        future = client.call_async(SetParameters.Request(parameters=[Parameter(name=name, value=pv)]))
        wait_until(future.done, 10)
        result = future.result().results[0]
        return result.successful, result.reason

    rgb = publish(frames_npz, "rgb", "/pal", child_env)
    try:
        with Launcher([node_on(random_checkpoint, "/pal", ("rgb",))], env=child_env):
            assert wait_until(lambda: "labels" in latest and "colour" in latest, 40), "no ~/labels or ~/color_mask"
            classes = len(latest["labels"]["classes"])
            assert client.wait_for_service(timeout_sec=10)
            assert set_param("outputs.palette", " ".join(["#ff0000"] * classes)) == (True, "")
            assert wait_until(lambda: latest["labels"]["palette"] == [[255, 0, 0]] * classes, 20)
            latest.pop("colour")
            assert wait_until(lambda: "colour" in latest, 20)
            colours = np.frombuffer(bytes(latest["colour"].data), np.uint8).reshape(-1, 3)
            assert (colours == [255, 0, 0]).all(), "~/color_mask drawn with the new palette"
            ok, reason = set_param("outputs.palette", "#ff0000 red")
            assert not ok and "outputs.palette entry 1 is 'red'" in reason
            ok, reason = set_param("outputs.palette", "#00ff00")
            assert not ok and f"1 colours, the checkpoint {classes} classes" in reason
            ok, reason = set_param("rgb.enabled", False)
            assert not ok and "read-only" in reason
            assert latest["labels"]["palette"] == [[255, 0, 0]] * classes, "a refused change changes nothing"
    finally:
        stop([rgb])


def test_a_sensor_left_out_for_want_of_a_camera_info_is_reported(frames_npz, random_checkpoint, child_env,
                                                                  rclpy_node):
    """RGB without CameraInfo still segments; LiDAR cannot be projected without one. Before, /diagnostics
    said OK 'running on rgb+lidar' while every mask came from RGB alone."""
    rec = Recorder()
    subscribe(rclpy_node, rec)
    statuses: dict[str, tuple[int, str]] = {}

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            statuses[status.name.rsplit(": ", 1)[1]] = (status.level[0], status.message)

    rclpy_node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    pubs = [publish(frames_npz, m, "/nocal", child_env, "--no-camera-info") for m in ("rgb", "lidar")]
    try:
        with Launcher([node_on(random_checkpoint, "/nocal", ("rgb", "lidar"))], env=child_env):
            assert rec.wait_masks(5, 0.0, 40), "RGB alone must still be segmented"
            # the LiDAR publisher may start after the RGB masks flow: its status says "no message yet" till then
            assert wait_until(lambda: "left out of frames" in statuses.get("lidar", (OK_LEVEL, ""))[1], 20), \
                f"LiDAR never reported as left out: {statuses.get('lidar')}"
            assert rec.subset_at_end() == "rgb"
            assert statuses["lidar"][0] == 1 and "left out of frames: no CameraInfo" in statuses["lidar"][1]
            assert "/nocal/rgb/camera_info" in statuses["lidar"][1]
            assert statuses["pipeline"] == (1, "degraded: running on rgb (lidar left out)")
    finally:
        stop(pubs)


def test_a_slower_sensor_goes_into_every_frame(frames_npz, random_checkpoint, child_env, rclpy_node):
    """A 30 Hz camera with a 10 Hz LiDAR: every mask uses both (the LiDAR sweep nearest to it), including
    the frames between sweeps; ~/subset does not flicker between rgb+lidar and rgb."""
    rec = Recorder()
    subscribe(rclpy_node, rec)
    pubs = [publish(frames_npz, "rgb", "/mixed", child_env, "--rate", "30"),
            publish(frames_npz, "lidar", "/mixed", child_env, "--rate", "10")]
    try:
        with Launcher([node_on(random_checkpoint, "/mixed", ("rgb", "lidar"))], env=child_env):
            assert rec.wait_subset("rgb+lidar", 0.0, 40), "the node never ran on rgb+lidar"
            assert rec.wait_masks(5, time.monotonic(), 20)
            time.sleep(1.0)
            t0 = time.monotonic()
            time.sleep(4.0)
            with rec.lock:
                subsets = [s for t, s in rec.subsets if t >= t0]
            masks = rec.masks_between(t0, t0 + 4.0)
    finally:
        stop(pubs)
    # one camera frame in three is at a sweep: were only those given the LiDAR, 2/3 would say "rgb" (a
    # sweep arriving over sync.timeout late on a loaded machine may still leave the odd one out)
    assert len(subsets) >= 20 and subsets.count("rgb+lidar") >= 0.9 * len(subsets), subsets
    between_sweeps = [s for _, s, _ in masks if abs(s * 10 - round(s * 10)) > 1e-3]
    assert between_sweeps, "no mask from a camera frame between two LiDAR sweeps"
    assert all(abs(s * 30 - round(s * 30)) < 1e-3 for _, s, _ in masks), "masks carry the camera's stamps"


def test_the_rig_publishes_the_frames_it_rendered_ahead_and_then_renders_live(child_env, rclpy_node):
    """prerender: the first frames are rendered before the rig starts; what it publishes, ahead or live
    after them, is the drive at the frame's rig time (matched to the image by the status' stamp)."""
    from charm_ros.msgs.fields import stamp_to_ns
    from charm_ros.msgs.images import image_to_numpy

    lock, images, frame_of = threading.Lock(), {}, {}

    def on_image(msg: Image) -> None:
        with lock:
            images[stamp_to_ns(msg.header.stamp)] = image_to_numpy(msg)

    def on_status(msg: String) -> None:
        status = json.loads(msg.data)
        with lock:
            frame_of[status["stamp"][0] * 10**9 + status["stamp"][1]] = status["frame"]

    qos = QoSProfile(depth=20, reliability=ReliabilityPolicy.BEST_EFFORT)
    rclpy_node.create_subscription(Image, "/sim_rig/rgb/image", on_image, qos)
    rclpy_node.create_subscription(String, "/sim_rig/status", on_status, 20)
    rig = NodeSpec(command=[resolve_executable("charm_sim_rig")], name="sim_rig",
                   params_files=[str(ROOT / "config" / "sim_rig.param.yaml")],
                   parameters={"modalities": "rgb", "size": [48, 64], "prerender": 0.5, "start_delay": 1.0})

    def published() -> dict[int, np.ndarray]:
        with lock:
            return {frame_of[s]: img for s, img in images.items() if s in frame_of}

    def ahead_and_live() -> dict[int, np.ndarray] | None:
        """Frames seen once some of the 5 rendered ahead and 3 rendered live are in."""
        seen = published()
        return seen if any(k < 5 for k in seen) and sum(k >= 5 for k in seen) >= 3 else None

    with Launcher([rig], env=child_env):
        got = wait_until(ahead_and_live, 60)
    assert got, f"frames seen: {sorted(published())}"
    world = World(seed=7, size_hw=(48, 64), fps=10.0)
    for k in sorted(got):
        np.testing.assert_array_equal(got[k], world.frame_at(k / 10.0).rgb, err_msg=f"frame {k}")


def test_five_sensor_rig_thermal_drops_out_and_returns_over_dds(random_checkpoint5, child_env, rclpy_node):
    """A five-modality checkpoint (rgb, depth, event, lidar, thermal) on the five-sensor rig: masks on all
    five, thermal dropping out switches ~/subset within 1 s with no gap over 1 s, and it comes back;
    /diagnostics has a status of its own for the thermal camera."""
    five, four = "rgb+depth+event+lidar+thermal", "rgb+depth+event+lidar"
    rec = Recorder()
    subscribe(rclpy_node, rec)
    rig_status: list[tuple[float, float, list[str]]] = []  # (arrival, rig time, sensors published)
    thermal_status: list[tuple[float, int, str]] = []

    def on_status(msg: String) -> None:
        status = json.loads(msg.data)
        with rec.lock:
            rig_status.append((time.monotonic(), status["t"], status["live"]))

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == "/charm: thermal":
                with rec.lock:
                    thermal_status.append((time.monotonic(), status.level[0], status.message))

    rclpy_node.create_subscription(String, "/sim_rig/status", on_status, 10)
    rclpy_node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)

    def rig_change(thermal_live: bool, after_t: float) -> float | None:
        """Arrival of the first rig frame after rig time `after_t` with thermal published or not."""
        def hits():
            with rec.lock:
                return [a for a, t, live in rig_status if t >= after_t and ("thermal" in live) == thermal_live]
        hit = wait_until(hits, 15)
        return hit[0] if hit else None

    inputs = [f"{m}/image" for m in ("rgb", "depth", "event", "thermal")] + ["lidar/points"] + [
        f"{m}/camera_info" for m in ("rgb", "depth", "thermal")]
    node = NodeSpec(command=[resolve_executable("charm_node")], name="charm",
                    params_files=[str(ROOT / "config" / "charm.param.yaml")],
                    parameters={"model.checkpoint": str(random_checkpoint5), "model.backend": "torch"},
                    remappings=[(f"~/{topic}", f"/sim_rig/{topic}") for topic in inputs])
    rig = NodeSpec(command=[resolve_executable("charm_sim_rig")], name="sim_rig",
                   params_files=[str(ROOT / "config" / "sim_rig.param.yaml")],
                   parameters={"modalities": "rgb,depth,event,lidar,thermal", "dropouts": "thermal:12-16"})
    with Launcher([node], env=child_env) as node_launcher:
        # the rig starts once the node runs (model loaded): the dropout then falls where the node is steady
        assert rec.wait_level(2, 0.0, 60) is not None, "the node never came up (no /diagnostics)"
        with Launcher([rig], env=child_env):
            t_rig = time.monotonic()
            assert rec.wait_subset(five, t_rig, 20) is not None, "the node never ran on all five sensors"
            assert rec.wait_masks(5, time.monotonic(), 20)
            time.sleep(1.0)
            t0 = time.monotonic()
            time.sleep(4.0)
            steady = rec.masks_between(t0, t0 + 4.0)
            with rec.lock:
                subsets = [s for t, s in rec.subsets if t0 <= t < t0 + 4.0]
                rig_hz = len([a for a, _, _ in rig_status if t0 <= a < t0 + 4.0]) / 4.0
            t_drop = rig_change(False, 12.0)
            assert t_drop is not None, "the rig never dropped thermal"
            assert t_drop > t0 + 4.0, "the node took so long to start on the rig that thermal dropped out meanwhile"
            switch = rec.wait_subset(four, t_drop, 3.0)
            t_back = rig_change(True, 16.0)
            assert t_back is not None, "the rig never brought thermal back"
            back = rec.wait_subset(five, t_back, 3.0)
            time.sleep(1.0)
            gap = max_gap(rec.masks_between(t_drop - 0.5, time.monotonic()))
        assert node_launcher.poll()["charm"] is None
    assert switch is not None and switch < 1.0, f"switched to {four} after {switch} s"
    assert back is not None, f"never back on {five}"
    levels = {level for _, level, _ in thermal_status}
    assert OK_LEVEL in levels and 1 in levels, f"thermal's status went OK -> WARN (stale): {thermal_status[-3:]}"
    # timing last: on a loaded machine (see `uptime`) the rig renders below its 10 Hz and unevenly, and a
    # frame stamped early against the sensors' period fires on the reference alone
    assert gap < 1.0, f"a {gap:.2f} s gap in the masks"
    with rec.lock:
        latency = {k: float(rec.pipeline_values[k]) for k in ("encode_ms", "inference_ms")}
    needed = sustainable_hz(latency, rig_hz)
    assert len(steady) / 4.0 >= needed, (f"{len(steady) / 4.0:.1f} Hz on five sensors (needed {needed:.1f}; the rig "
                                         f"rendered {rig_hz:.1f} Hz; {latency})")
    assert subsets.count(five) >= 0.9 * len(subsets), subsets
