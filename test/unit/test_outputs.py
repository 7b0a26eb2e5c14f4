"""Robot integration without a ROS graph: camera-resolution outputs, labeled points, QoS words and
levels, lifecycle and pause reports, the launcher's conditions, Foxglove schemas."""
from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from std_msgs.msg import Header

from charm_core.data.synthetic import World
from charm_core.inference import Predictor
from charm_ros.msgs.camera_info import k_to_camera_info
from charm_ros.msgs.images import numpy_to_image
from charm_ros.msgs.pointclouds import pointcloud2_to_xyzi, xyzi_to_pointcloud2
from charm_ros.msgs.outputs import NO_DATA, output_messages
from charm_ros.runtime.engine import Engine
from charm_ros.runtime.health import ERROR, OK, WARN, ModalityHealth, PipelineHealth, assess, idle_reports
from charm_ros.runtime.node_config import validate
from charm_ros.runtime.qos import Endpoint, input_warning, output_warning
from charm_ros.tools.foxglove_bridge import ros2msg_schema
from charm_ros.tools.launcher import load_launch_yaml

CAMERA_HW = (240, 320)


@pytest.fixture(scope="module")
def world_frame():
    return World(seed=4, size_hw=CAMERA_HW).frame_at(2.0)


@pytest.fixture(scope="module")
def predictor(random_checkpoint):
    return Predictor.from_checkpoint(random_checkpoint, device="cpu")


def run_engine(predictor, f, resolution: str):
    """One rgb+lidar frame of `f` through an Engine as the node feeds it (messages, CameraInfo)."""
    config = validate({"depth.enabled": False, "event.enabled": False, "model.input_size": [128, 128],
                       "outputs.resolution": resolution,
                       "geometry.lidar_to_camera": [float(x) for x in f.geometry.T_cam_lidar.ravel()]})
    engine = Engine(predictor, config)
    header = Header(stamp=Time(sec=5), frame_id="camera")
    engine.accept_camera_info("rgb", k_to_camera_info(f.K, CAMERA_HW, header))
    engine.accept("rgb", numpy_to_image(f.rgb, "rgb8", header), 5.0)
    engine.accept("lidar", xyzi_to_pointcloud2(f.lidar, header, frame_id="lidar"), 5.0)
    frames = engine.due(5.0)
    assert len(frames) == 1 and set(frames[0].data) == {"rgb", "lidar"}
    return engine, engine.run(frames[0], 5.0)


def test_camera_resolution_outputs_are_the_cameras_pixels_and_K(predictor, world_frame):
    f = world_frame
    _, net = run_engine(predictor, f, "network")
    engine, cam = run_engine(predictor, f, "camera")
    assert net.labels.shape == (96, 128), "network: the letterbox content of a 128x128 input"
    assert cam.labels.shape == cam.confidence.shape == CAMERA_HW and cam.background.shape == (*CAMERA_HW, 3)
    np.testing.assert_array_equal(cam.K, f.K)
    # nearest, pixel centres mapped: camera pixel (v, u) takes network pixel floor((v + 0.5) * 96 / 240), ...
    rows = np.floor((np.arange(240) + 0.5) * 96 / 240).astype(int)
    cols = np.floor((np.arange(320) + 0.5) * 128 / 320).astype(int)
    np.testing.assert_array_equal(cam.labels, net.labels[rows][:, cols])
    np.testing.assert_array_equal(cam.confidence, net.confidence[rows][:, cols])
    msgs = output_messages(cam, ["mask", "confidence", "camera_info", "overlay"], engine.palette, overlay_alpha=0.0)
    for name in ("mask", "confidence", "camera_info", "overlay"):
        assert (msgs[name].height, msgs[name].width) == CAMERA_HW, name
    np.testing.assert_allclose(np.reshape(msgs["camera_info"].k, (3, 3)), f.K)
    overlay = np.frombuffer(bytes(msgs["overlay"].data), np.uint8).reshape(*CAMERA_HW, 3)
    np.testing.assert_array_equal(overlay, f.rgb)  # alpha 0: the camera's own image, not an upscaled one


@pytest.mark.parametrize("resolution", ["network", "camera"])
def test_labeled_points_carry_the_mask_at_each_points_own_projection(predictor, world_frame, resolution):
    f = world_frame
    engine, result = run_engine(predictor, f, resolution)
    cloud = output_messages(result, ["labeled_points"], engine.palette)["labeled_points"]
    assert cloud.header.frame_id == "lidar" and cloud.header.stamp.sec == 5 and cloud.width == len(f.lidar)
    dtype = np.dtype({"names": [fl.name for fl in cloud.fields], "offsets": [fl.offset for fl in cloud.fields],
                      "formats": [{7: "<f4", 2: "u1"}[fl.datatype] for fl in cloud.fields],
                      "itemsize": cloud.point_step})
    points = np.frombuffer(bytes(cloud.data), dtype)
    np.testing.assert_array_equal(np.stack([points[n] for n in ("x", "y", "z", "intensity")], 1), f.lidar)
    # the projection, recomputed here from K and the extrinsic
    K, T, (h, w) = result.K, f.geometry.T_cam_lidar, result.labels.shape
    cam = f.lidar[:, :3].astype(np.float64) @ T[:3, :3].T + T[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.rint(K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 1] * cam[:, 1] / cam[:, 2] + K[0, 2])
        v = np.rint(K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2])
        inside = (cam[:, 2] > 0.1) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    assert inside.sum() > 100 and (~inside).sum() > 100, "the rig's LiDAR sees around the camera"
    ui, vi = u[inside].astype(int), v[inside].astype(int)
    np.testing.assert_array_equal(points["label"][inside], result.labels[vi, ui])
    np.testing.assert_array_equal(points["confidence"][inside], result.confidence[vi, ui])
    assert (points["label"][~inside] == NO_DATA).all() and (points["confidence"][~inside] == 0).all()


def test_no_labeled_points_without_lidar_or_without_calibration(predictor, world_frame):
    engine, result = run_engine(predictor, world_frame, "network")
    del result.frame.data["lidar"]
    assert output_messages(result, ["labeled_points"], engine.palette) == {}


def test_point_cloud_layout_round_trips():
    points = np.array([[1, 2, 3, 0.5], [4, 5, 6, 0.25]], np.float32)
    msg = xyzi_to_pointcloud2(points, frame_id="lidar")
    assert msg.point_step == 16 and [f.offset for f in msg.fields] == [0, 4, 8, 12] and msg.is_dense
    np.testing.assert_array_equal(pointcloud2_to_xyzi(msg), points)


# ------------------------------------------------------------------ QoS: words and levels
NODE = Endpoint("/charm", "sensor_msgs/msg/Image", "reliable", "volatile")


def test_a_best_effort_publisher_to_a_reliable_input_is_named_with_the_fix():
    text = input_warning("/cam/image", NODE, [Endpoint("/driver", NODE.type, "best_effort", "volatile")], None, 3.0)
    assert "/cam/image" in text and "/driver" in text and "(reliability)" in text
    assert "qos.input_reliability to best_effort" in text
    ok = Endpoint("/driver", NODE.type, "reliable", "volatile")
    assert input_warning("/cam/image", NODE, [ok], None, 3.0) == ""
    best_effort_node = Endpoint("/charm", NODE.type, "best_effort", "volatile")
    assert input_warning("/cam/image", best_effort_node, [ok, Endpoint("/b", NODE.type, "best_effort", "volatile")],
                         None, 3.0) == "", "best effort matches every publisher"


def test_durability_type_silence_and_events_are_named():
    latched = Endpoint("/charm", "sensor_msgs/msg/CameraInfo", "reliable", "transient_local")
    volatile = Endpoint("/cal", "sensor_msgs/msg/CameraInfo", "reliable", "volatile")
    assert "(durability)" in input_warning("/info", latched, [volatile], None, 3.0)
    compressed = Endpoint("/cam", "sensor_msgs/msg/CompressedImage", "reliable", "volatile")
    text = input_warning("/img", NODE, [compressed], None, 3.0)
    assert "publishes sensor_msgs/msg/CompressedImage" in text and "/compressed" in text
    fine = Endpoint("/cam", NODE.type, "reliable", "volatile")
    assert input_warning("/img", NODE, [fine], 2.0, 3.0) == "", "not silent for long enough"
    assert "nothing received for 3.5 s" in input_warning("/img", NODE, [fine], 3.5, 3.0)
    assert "(deadline)" in input_warning("/img", NODE, [fine], None, 3.0, event_policy="deadline")
    undiscovered = Endpoint("", NODE.type, "best_effort", "volatile")  # its node not known yet
    assert input_warning("/img", NODE, [undiscovered], None, 3.0).startswith("/img: a publisher publishes best_effort")


def test_an_output_subscriber_asking_for_more_than_is_offered_is_named():
    ours = Endpoint("/charm", "sensor_msgs/msg/Image", "best_effort", "volatile")
    rviz = Endpoint("/rviz", ours.type, "reliable", "transient_local")
    text = output_warning("/charm/mask", ours, [rviz])
    assert "/charm/mask: /rviz subscribes reliable" in text and "qos.output_reliability to reliable" in text
    assert "(durability)" in text
    assert output_warning("/charm/mask", ours, [Endpoint("/v", ours.type, "best_effort", "volatile")]) == ""


def _health(alive, qos=None, paused=False, outputs=None):
    mods = [ModalityHealth(m, m in alive, 0.05 if m in alive else None, 10.0, 10, 10, 0, 0,
                           qos_warning=(qos or {}).get(m, "")) for m in ("rgb", "lidar")]
    return PipelineHealth(enabled=("rgb", "lidar"), modalities=mods, subset=tuple(alive), frames=0, frames_dropped=0,
                          frames_skipped=0, encode_ms=None, inference_ms=None, end_to_end_ms=None, output_rate_hz=0.0,
                          paused=paused, output_warnings=outputs or {})


def test_qos_warnings_set_the_levels():
    reports = assess(_health((), qos={"rgb": "/cam: reliability ..."}))
    assert reports[0].level == ERROR and reports[0].message == "no sensor input alive (rgb: see the sensor status)"
    assert reports[1].level == WARN and reports[1].message == "no message yet: /cam: reliability ..."
    assert reports[1].values["qos_warning"] == "/cam: reliability ..."
    alive = assess(_health(("rgb", "lidar"), qos={"lidar": "/pts: a second publisher ..."}))
    assert alive[0].level == WARN and "lidar: see the sensor status" in alive[0].message
    assert alive[2].level == WARN and alive[2].message.startswith("alive: /pts")
    assert assess(_health(("rgb", "lidar")))[-1].level == OK
    out = assess(_health(("rgb", "lidar"), outputs={"/charm/mask": "/charm/mask: /rviz subscribes reliable ..."}))
    assert out[0].level == OK and out[-1].name == "charm: outputs" and out[-1].level == WARN
    assert "/charm/mask" in out[-1].message


def test_paused_and_idle_nodes_say_so():
    paused = assess(_health(("rgb",), paused=True))
    assert paused[0].level == OK and paused[0].message.startswith("paused by ~/enable")
    assert paused[0].values["enabled"] == "false" and paused[0].values["lifecycle_state"] == "active"
    idle = idle_reports("inactive", {})
    assert idle[0].level == OK and idle[0].message.startswith("inactive: no inference")
    assert idle[0].values == {"lifecycle_state": "inactive"} and idle[1].name == "charm: outputs"


# ------------------------------------------------------------------ launch conditions, Foxglove schemas
def test_launch_entries_honour_if_and_unless(tmp_path):
    path = tmp_path / "x.launch.yaml"
    path.write_text("""launch:
- arg: {name: viewer, default: "false"}
- node: {pkg: charm_ros, exec: charm_node, name: a}
- node: {pkg: charm_ros, exec: not_installed_anywhere, name: b, if: $(var viewer)}
- node: {pkg: charm_ros, exec: charm_node, name: c, unless: $(var viewer)}
""")
    assert [s.name for s in load_launch_yaml(path)[0]] == ["a", "c"], "a false `if` is not even resolved"
    with pytest.raises(FileNotFoundError, match="not_installed_anywhere"):
        load_launch_yaml(path, {"viewer": "true"})
    with pytest.raises(ValueError, match="expected true or false"):
        load_launch_yaml(path, {"viewer": "maybe"})


def test_ros2msg_schema_lists_every_nested_type_once():
    schema = ros2msg_schema("sensor_msgs/msg/PointCloud2")
    sections = [line for line in schema.splitlines() if line.startswith("MSG: ")]
    assert sections == ["MSG: std_msgs/Header", "MSG: sensor_msgs/PointField", "MSG: builtin_interfaces/Time"]
    assert schema.startswith("# This message holds a collection of N-dimensional points")
    assert "uint8 FLOAT32 = 7" in schema and schema.count("=" * 80) == 3


# ------------------------------------------------------------------ memory a deactivated node gives back
def _b0_predictor(tmp_path, device: str) -> tuple[Predictor, int]:
    import torch

    from charm_core.checkpoint import save_checkpoint
    from charm_core.model import ModelConfig, build_model

    torch.manual_seed(0)
    config = ModelConfig(backbone="b0")
    path = tmp_path / "b0.safetensors"
    save_checkpoint(path, build_model(config).eval(), config, provenance={"input_size": [64, 64]})
    predictor = Predictor.from_checkpoint(path, device=device)
    predictor.predict({"rgb": np.zeros((3, 64, 64), np.float32)})
    return predictor, path.stat().st_size


def _rss_bytes() -> int:
    line = next(line for line in open("/proc/self/status") if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def test_release_memory_gives_the_models_memory_back_on_cpu(tmp_path, one_torch_thread):
    from charm_core.inference import release_memory
    from charm_core.malloc_tuning import release_freed_memory

    release_freed_memory()  # what earlier tests freed is not counted below
    predictor, size = _b0_predictor(tmp_path, "cpu")
    loaded = _rss_bytes()
    device = predictor.device
    del predictor
    release_memory(device)
    assert loaded - _rss_bytes() >= size / 2, "dropping the predictor left its memory in the process"


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="no CUDA device")
def test_release_memory_gives_the_models_memory_back_on_cuda(tmp_path):
    import torch

    from charm_core.inference import release_memory

    predictor, size = _b0_predictor(tmp_path, "cuda")
    device = predictor.device
    assert torch.cuda.memory_reserved(device) >= size
    del predictor
    release_memory(device)
    assert torch.cuda.memory_allocated(device) < size / 2 and torch.cuda.memory_reserved(device) < size / 2
