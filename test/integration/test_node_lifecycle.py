"""Robot integration over real DDS: lifecycle transitions and ~/enable, QoS mismatches named on
/diagnostics, labeled points and camera-resolution masks on the rig, the demo watched through Foxglove."""
from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.srv import DescribeParameters
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import String
from std_srvs.srv import SetBool

from charm_ros.runtime.node_config import PARAMETERS
from charm_ros.runtime.parameters import load_param_file
from charm_ros.tools.launcher import Launcher, NodeSpec, load_launch_yaml, resolve_executable
from conftest import ROOT
from test_node_integration import Recorder, frames_npz, node_on, publish, stop, subscribe, wait_until  # noqa: F401

pytestmark = pytest.mark.slow
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
BEST_EFFORT = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)


@pytest.fixture(scope="module")
def b0_checkpoint(tmp_path_factory):
    """A random b0-size CHARM checkpoint: 24 MB of weights, enough to see them leave the process."""
    import torch

    from charm_core.checkpoint import save_checkpoint
    from charm_core.model import ModelConfig, build_model

    torch.manual_seed(0)
    config = ModelConfig(backbone="b0")
    path = tmp_path_factory.mktemp("ckpt") / "random_b0.safetensors"
    save_checkpoint(path, build_model(config).eval(), config, provenance={"input_size": [128, 128]})
    return path


def call(node, client, request, timeout: float = 30.0):
    assert client.wait_for_service(timeout_sec=timeout), f"no service {client.srv_name}"
    future = client.call_async(request)
    assert wait_until(future.done, timeout), f"{client.srv_name} did not answer"
    return future.result()


def rss_mb(pid: int) -> float:
    line = next(line for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


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


def test_lifecycle_transitions_free_the_model_and_enable_pauses(frames_npz, b0_checkpoint, child_env, rclpy_node):
    rec = Recorder()
    subscribe(rclpy_node, rec)
    statuses = Statuses(rclpy_node)
    spec = node_on(b0_checkpoint, "/lc", ("rgb",))
    spec.parameters.update({"autostart": False, "model.input_size": [128, 128], "model.backend": "torch"})
    change = rclpy_node.create_client(ChangeState, "/charm/change_state")
    get = rclpy_node.create_client(GetState, "/charm/get_state")
    enable = rclpy_node.create_client(SetBool, "/charm/enable")
    model_mb = b0_checkpoint.stat().st_size / 2 ** 20

    def transition(transition_id: int) -> float:
        """Drive one transition; the time its response came."""
        assert call(rclpy_node, change, ChangeState.Request(transition=Transition(id=transition_id))).success
        return time.monotonic()

    def state() -> str:
        return call(rclpy_node, get, GetState.Request()).current_state.label

    rgb = publish(frames_npz, "rgb", "/lc", child_env)
    try:
        with Launcher([spec], env=child_env) as launcher:
            pid = launcher.processes["charm"].pid
            assert state() == "unconfigured"
            assert statuses.first("pipeline", 0.0, 20, lambda lv, m: m.startswith("unconfigured: no inference"))
            transition(Transition.TRANSITION_CONFIGURE)
            assert state() == "inactive"
            assert statuses.first("pipeline", time.monotonic(), 5, lambda lv, m: m.startswith("inactive"))
            time.sleep(1.0)
            assert rec.masks_between(0.0, time.monotonic()) == [], "masks before activate"

            for round_ in (1, 2):  # the second activate reloads the model deactivate released
                sent = time.monotonic()
                active = transition(Transition.TRANSITION_ACTIVATE)
                assert rec.wait_masks(1, active, 1.0), f"activate {round_}: no mask within 1 s"
                first = rec.masks_between(active, np.inf)[0][0]
                print(f"activate {round_}: transition {active - sent:.2f} s, "
                      f"first mask {first - active:.2f} s after it")
                assert rec.wait_masks(10, active, 10.0)
                rss_active = rss_mb(pid)
                inactive = transition(Transition.TRANSITION_DEACTIVATE)
                time.sleep(1.5)
                assert rec.masks_between(inactive + 0.2, np.inf) == [], "masks while inactive"
                rss_inactive = rss_mb(pid)
                print(f"RSS active {rss_active:.0f} MB, inactive {rss_inactive:.0f} MB, model {model_mb:.1f} MB")
                assert rss_active - rss_inactive >= model_mb / 2, "deactivate did not release the model's memory"

            active = transition(Transition.TRANSITION_ACTIVATE)
            assert rec.wait_masks(3, active, 5.0)
            off = call(rclpy_node, enable, SetBool.Request(data=False))
            paused_at = time.monotonic()
            assert off.success and off.message == "inference paused"
            time.sleep(2.0)
            assert rec.masks_between(paused_at + 0.5, np.inf) == [], "masks later than 0.5 s after ~/enable false"
            assert statuses.first("pipeline", paused_at, 3, lambda lv, m: m.startswith("paused by ~/enable"))
            call(rclpy_node, enable, SetBool.Request(data=True))
            resumed_at = time.monotonic()
            assert rec.wait_masks(1, resumed_at, 0.5), "no mask within 0.5 s of ~/enable true"

            transition(Transition.TRANSITION_DEACTIVATE)
            transition(Transition.TRANSITION_CLEANUP)
            assert state() == "unconfigured"
            assert launcher.poll()["charm"] is None
    finally:
        stop([rgb])


def test_a_qos_mismatch_is_named_on_diagnostics_and_clears_when_fixed(frames_npz, random_checkpoint, child_env,
                                                                      rclpy_node):
    statuses = Statuses(rclpy_node)
    spec = node_on(random_checkpoint, "/qos", ("rgb",))
    spec.parameters.update({"qos.input_reliability": "reliable", "qos.output_reliability": "best_effort"})
    masks: list[float] = []
    with Launcher([spec], env=child_env):
        assert statuses.first("pipeline", 0.0, 30, lambda lv, m: "no sensor input alive" in m)
        best_effort = publish(frames_npz, "rgb", "/qos", child_env)
        try:
            assert wait_until(lambda: rclpy_node.count_publishers("/qos/rgb/image") > 0, 20)
            seen = time.monotonic()
            hit = statuses.first("rgb", seen, 2.0,
                                 lambda lv, m: lv == 1 and "/qos/rgb/image" in m and "reliability" in m)
            assert hit, "no WARN naming the topic and the policy within 2 s of the publisher appearing"
            print(f"QoS WARN {hit[0]:.2f} s after the publisher appeared: {hit[2]}")
            assert "qos.input_reliability to best_effort" in hit[2]
            # an output subscriber asking for more than the node offers is named too
            rclpy_node.create_subscription(Image, "/charm/mask", lambda m: None, RELIABLE)
            assert statuses.first("outputs", time.monotonic(), 3.0,
                                  lambda lv, m: lv == 1 and "/charm/mask" in m and "reliability" in m)
        finally:
            stop([best_effort])
        rclpy_node.create_subscription(Image, "/charm/mask", lambda m: masks.append(time.monotonic()), BEST_EFFORT)
        reliable = publish(frames_npz, "rgb", "/qos", child_env, "--reliable")
        try:
            fixed = time.monotonic()
            assert statuses.first("rgb", fixed, 20, lambda lv, m: lv == 0 and m == "alive"), "the WARN never cleared"
            assert wait_until(lambda: len(masks) >= 3, 20), "no masks from the reliable publisher"
        finally:
            stop([reliable])


def test_labeled_points_and_camera_resolution_on_the_rig(random_checkpoint, child_env, rclpy_node):
    rig = NodeSpec(command=[resolve_executable("charm_sim_rig")], name="sim_rig",
                   params_files=[str(ROOT / "config" / "sim_rig.param.yaml")],
                   parameters={"size": [240, 320], "fps": 5.0})
    node = NodeSpec(command=[resolve_executable("charm_node")], name="charm",
                    params_files=[str(ROOT / "config" / "charm.param.yaml")],
                    # patient sync: on a loaded machine the rig renders slower than its 10 Hz, and a frame
                    # must still wait for its LiDAR sweep
                    parameters={"model.checkpoint": str(random_checkpoint), "model.backend": "torch",
                                "outputs.resolution": "camera",
                                "depth.enabled": False, "event.enabled": False, "model.input_size": [128, 128],
                                "rgb.stale_timeout": 3.0, "lidar.stale_timeout": 3.0, "sync.timeout": 1.0},
                    remappings=[("~/rgb/image", "/sim_rig/rgb/image"),
                                ("~/rgb/camera_info", "/sim_rig/rgb/camera_info"),
                                ("~/lidar/points", "/sim_rig/lidar/points")])
    got: dict[str, dict] = {"cloud": {}, "mask": {}, "confidence": {}, "info": {}, "rig_info": {}}

    def keep(kind):
        return lambda msg: got[kind].__setitem__((msg.header.stamp.sec, msg.header.stamp.nanosec), msg)
    for kind, msg_type, topic in [("cloud", PointCloud2, "/charm/labeled_points"), ("mask", Image, "/charm/mask"),
                                  ("confidence", Image, "/charm/confidence"),
                                  ("info", CameraInfo, "/charm/camera_info"),
                                  ("rig_info", CameraInfo, "/sim_rig/rgb/camera_info")]:
        rclpy_node.create_subscription(msg_type, topic, keep(kind), RELIABLE if kind != "rig_info" else BEST_EFFORT)

    def matched() -> list:
        return [s for s in list(got["cloud"]) if all(s in got[k] for k in ("mask", "confidence", "info", "rig_info"))]
    with Launcher([rig, node], env=child_env):
        assert wait_until(lambda: len(matched()) >= 5, 60), {k: len(v) for k, v in got.items()}
    T = np.reshape(load_param_file(ROOT / "config" / "charm.param.yaml")["geometry.lidar_to_camera"], (4, 4))
    for stamp in matched()[:5]:
        cloud, mask, info = got["cloud"][stamp], got["mask"][stamp], got["info"][stamp]
        assert (mask.height, mask.width) == (got["confidence"][stamp].height, got["confidence"][stamp].width) == \
            (info.height, info.width) == (240, 320), "outputs.resolution camera: the camera's 320x240"
        np.testing.assert_array_equal(info.k, got["rig_info"][stamp].k)
        assert cloud.header.frame_id == "lidar"
        fields = {f.name: f.offset for f in cloud.fields}
        raw = np.frombuffer(bytes(cloud.data), np.uint8).reshape(-1, cloud.point_step)
        xyz = np.stack([raw[:, fields[n]:fields[n] + 4].copy().view("<f4")[:, 0] for n in "xyz"], 1)
        label = raw[:, fields["label"]]
        labels = np.frombuffer(bytes(mask.data), np.uint8).reshape(240, 320)
        K = np.reshape(info.k, (3, 3))
        cam = xyz.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.rint(K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 2])
            v = np.rint(K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2])
            inside = (cam[:, 2] > 0.1) & (u >= 0) & (u < 320) & (v >= 0) & (v < 240)
        assert inside.sum() > 100 and (~inside).sum() > 100
        np.testing.assert_array_equal(label[inside], labels[v[inside].astype(int), u[inside].astype(int)])
        assert (label[~inside] == 255).all()


# ------------------------------------------------------------------ Foxglove
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _watch(port: int, topics: dict[str, type], timeout: float) -> dict[str, object]:
    """Subscribe over the Foxglove WebSocket protocol and decode one message of each topic."""
    import websockets
    from rclpy.serialization import deserialize_message

    decoded: dict[str, object] = {}
    async with websockets.connect(f"ws://127.0.0.1:{port}", max_size=None,
                                  subprotocols=["foxglove.sdk.v1", "foxglove.websocket.v1"]) as ws:
        assert json.loads(await ws.recv())["op"] == "serverInfo"
        channels, subscriptions = {}, {}
        deadline = time.monotonic() + timeout
        while len(decoded) < len(topics) and time.monotonic() < deadline:
            try:
                message = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if isinstance(message, str):
                body = json.loads(message)
                if body["op"] == "advertise":
                    for ch in body["channels"]:
                        if ch["topic"] in topics and ch["topic"] not in channels.values():
                            assert ch["encoding"] == "cdr" and ch["schemaEncoding"] == "ros2msg"
                            channels[ch["id"]] = ch["topic"]
                            subscriptions[len(subscriptions) + 1] = ch["topic"]
                            await ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                                {"id": len(subscriptions), "channelId": ch["id"]}]}))
            elif message[0] == 1:  # messageData: opcode, subscription id, log time, payload
                subscription, _ = struct.unpack_from("<IQ", message, 1)
                topic = subscriptions[subscription]
                decoded.setdefault(topic, deserialize_message(message[13:], topics[topic]))
    return decoded


def test_the_demo_can_be_watched_in_foxglove(tmp_path, child_env):
    port = _free_port()
    specs, _ = load_launch_yaml(ROOT / "launch" / "sim_demo.launch.yaml", {
        "foxglove": "true", "foxglove_port": str(port), "duration": "60.0", "output_dir": str(tmp_path / "demo"),
        "backend": "torch"})
    assert [s.name for s in specs] == ["sim_rig", "charm", "demo_report", "foxglove_bridge"]
    topics = {"/charm/overlay": Image, "/charm/subset": String, "/diagnostics": DiagnosticArray}
    with Launcher(specs, env=child_env):
        decoded = {}
        deadline = time.monotonic() + 60
        while len(decoded) < len(topics) and time.monotonic() < deadline:
            try:
                decoded = asyncio.run(_watch(port, topics, deadline - time.monotonic()))
            except OSError:  # the server is not listening yet
                time.sleep(0.5)
    assert set(decoded) == set(topics), f"decoded only {sorted(decoded)}"
    overlay = decoded["/charm/overlay"]
    assert (overlay.encoding, overlay.height, overlay.width) == ("rgb8", 256, 256)
    assert all(m in ("rgb", "depth", "event", "lidar") for m in decoded["/charm/subset"].data.split("+"))
    assert "/charm: pipeline" in [s.name for s in decoded["/diagnostics"].status]


def test_descriptors_carry_the_range_and_choices_of_every_bounded_parameter(random_checkpoint, child_env,
                                                                            rclpy_node):
    """What `ros2 param describe /charm NAME` shows, read over DDS: ranges and choices come from the specs."""
    spec = node_on(random_checkpoint, "/desc", ("rgb",))
    spec.parameters["autostart"] = False  # parameters are declared at start; no model is needed
    bounded = [p for p in PARAMETERS if p.choices or p.minimum is not None or p.maximum is not None]
    assert len(bounded) > 10
    describe = rclpy_node.create_client(DescribeParameters, "/charm/describe_parameters")
    with Launcher([spec], env=child_env):
        answer = call(rclpy_node, describe, DescribeParameters.Request(names=[p.name for p in bounded]))
    assert [d.name for d in answer.descriptors] == [p.name for p in bounded]
    for p, d in zip(bounded, answer.descriptors):
        assert d.description == p.description and d.read_only == (not p.dynamic), p.name
        for choice in p.choices:
            assert choice in d.additional_constraints, p.name
        if p.minimum is None and p.maximum is None:
            continue
        ranges = d.integer_range if isinstance(p.default, int) else d.floating_point_range
        assert len(ranges) == 1, p.name
        if p.minimum is not None:
            assert ranges[0].from_value == pytest.approx(p.minimum), p.name
        if p.maximum is not None:
            assert ranges[0].to_value == pytest.approx(p.maximum), p.name
