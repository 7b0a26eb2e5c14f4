"""The node's sensors follow the checkpoint: a five-modality (rgb, depth, event, lidar, thermal) model
gets a thermal section, its thermal camera is read in any single-channel encoding with scale/offset
to Kelvin, and encodes exactly as the dataset does; the tools take the fifth sensor too."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time

from charm_core.checkpoint import CheckpointError, read_modality_specs
from charm_core.data.deliver import DeliverDataset
from charm_core.data.synthetic import World
from charm_core.data.synthetic.export import write_dataset
from charm_core.data.synthetic.thermal import centikelvin
from charm_core.encoders import scale_intrinsics
from charm_core.inference import Predictor
from charm_core.modalities import BUILTIN, ModalitySpec, all_subsets, subset_name
from charm_ros.msgs import camera_info, fields, images
from charm_ros.msgs.outputs import output_messages
from charm_ros.runtime.engine import Engine
from charm_ros.runtime.node_config import (PARAMETERS, ConfigError, checkpoint_sensors, node_sensors, parameters,
                                           validate)
from charm_ros.runtime.parameters import load_param_file
from charm_ros.bags.evaluator import BagEvaluator
from charm_ros.bags.reader import read_in_stamp_order
from charm_ros.bags.topics import default_topics, topic_keys
from charm_ros.tools.bag_eval import main as bag_eval_main
from charm_ros.tools.bag_record import RIG_PREFIX, record
from charm_ros.runtime.dropouts import parse_dropouts, phases
from charm_ros.tools.sim_rig import RigEncoding, frame_messages
from support import ROOT

FIVE = ("rgb", "depth", "event", "lidar", "thermal")
ONLY_CAMERAS = {"depth.enabled": False, "event.enabled": False, "lidar.enabled": False, "model.input_size": [64, 64]}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def predictor(random_checkpoint5):
    return Predictor.from_checkpoint(random_checkpoint5, device="cpu")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """One 64x64 synthetic frame written with rgb and thermal, as charm-synth writes it."""
    root = tmp_path_factory.mktemp("synth_thermal")
    meta = write_dataset(root, {"val": 1}, (64, 64), seed=5, workers=1, progress=False, modalities=("rgb", "thermal"))
    return root, np.asarray(meta["sequences"][0]["K"])


def engine_for(predictor, checkpoint, **values) -> Engine:
    return Engine(predictor, validate({**ONLY_CAMERAS, **values}, checkpoint_sensors(str(checkpoint))))


def stamped(msg, sec: int = 1):
    msg.header.stamp = Time(sec=sec, nanosec=0)
    return msg


def network_inputs(engine: Engine, monkeypatch, messages: dict, infos: dict, sec: int = 1) -> dict[str, np.ndarray]:
    """What the model is given for one frame of `messages` (sensor -> message) with `infos` (CameraInfo)."""
    seen: dict[str, np.ndarray] = {}
    predict = engine.predictor.predict

    def spy(inputs):
        seen.update(inputs)
        return predict(inputs)

    monkeypatch.setattr(engine.predictor, "predict", spy)
    for sensor, info in infos.items():
        engine.accept_camera_info(sensor, info)
    for sensor, msg in messages.items():
        engine.accept(sensor, stamped(msg, sec), float(sec))
    frames = engine.due(sec + 0.01)
    assert len(frames) == 1, "one frame of every sensor given"
    engine.run(frames[0], sec + 0.01)
    return seen


def stored_frame(root):
    rgb_path = next(root.glob("img/*/val/*/*_rgb_front.png"))
    thermal_path = (root / "thermal" / rgb_path.relative_to(root / "img").parent
                    / rgb_path.name.replace("_rgb", "_thermal"))
    rgb = cv2.cvtColor(cv2.imread(str(rgb_path)), cv2.COLOR_BGR2RGB)
    thermal = cv2.imread(str(thermal_path), cv2.IMREAD_UNCHANGED)
    assert thermal.dtype == np.uint16 and thermal.shape == (64, 64), "centi-Kelvin, at the camera's size"
    return rgb, thermal


def test_checkpoint_metadata_names_the_sensors_and_the_node_declares_a_thermal_section(random_checkpoint5,
                                                                                      random_checkpoint, tmp_path):
    assert tuple(s.name for s in read_modality_specs(random_checkpoint5)) == FIVE
    sensors = checkpoint_sensors(str(random_checkpoint5))
    assert sensors[-1] == BUILTIN["thermal"]
    names = [p.name for p in parameters(sensors)]
    extra = names[len(PARAMETERS):]
    assert extra == ["thermal.enabled", "thermal.topic", "thermal.time_offset", "thermal.stale_timeout",
                     "thermal.camera_info_topic", "thermal.scale", "thermal.offset"]
    assert parameters(checkpoint_sensors(str(random_checkpoint))) == PARAMETERS, "the four's names are unchanged"

    cfg = validate(load_param_file(ROOT / "config" / "charm.param.yaml"), sensors)
    assert cfg.enabled == FIVE and [m.name for m in cfg.sync.modalities] == list(FIVE), "unlisted ones follow"
    assert cfg.topics["thermal"] == "~/thermal/image" and cfg.camera_info_topics["thermal"] == "~/thermal/camera_info"
    assert cfg.pipeline.units["thermal"].scale == 0.01 and cfg.specs["thermal.scale"].dynamic
    custom = validate({"thermal.scale": 0.04, "thermal.offset": -2.0, "sync.reference_priority": ["thermal", "rgb"]},
                      sensors)
    assert custom.pipeline.units["thermal"] == ModalitySpec("thermal", "intensity", range=(250.0, 330.0), scale=0.04,
                                                            offset=-2.0, unit="K")
    assert [m.name for m in custom.sync.modalities][:2] == ["thermal", "rgb"]
    with pytest.raises(ConfigError, match="parameter thermal.scale must be a float"):
        validate({"thermal.scale": "hot"}, sensors)
    with pytest.raises(ConfigError, match=r"unknown parameters \['thermal.enabled'\]"):
        validate({"thermal.enabled": True})  # a four-sensor checkpoint has no thermal section
    with pytest.raises(ConfigError, match="rgb2 \\(kind color\\)"):
        node_sensors((ModalitySpec("rgb", "color"), ModalitySpec("rgb2", "color")))
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.safetensors: not a readable safetensors file"):
        read_modality_specs(tmp_path / "junk.safetensors")


def test_a_mono16_centikelvin_thermal_image_encodes_exactly_as_the_dataset_does(predictor, random_checkpoint5,
                                                                                 dataset, monkeypatch):
    root, K = dataset
    rgb, thermal = stored_frame(root)
    expected = {m: t.numpy() for m, t in DeliverDataset(root, "val", ("rgb", "thermal"), (64, 64))[0][0].items()}
    engine = engine_for(predictor, random_checkpoint5)
    info = camera_info.k_to_camera_info(K, (64, 64))
    inputs = network_inputs(engine, monkeypatch, {"rgb": images.numpy_to_image(rgb, "rgb8"),
                                                  "thermal": images.numpy_to_image(thermal, "mono16")},
                            {"rgb": info, "thermal": info})
    assert set(inputs) == {"rgb", "thermal"}
    np.testing.assert_array_equal(inputs["thermal"], expected["thermal"])
    np.testing.assert_array_equal(inputs["rgb"], expected["rgb"])
    assert 0.05 < inputs["thermal"].mean() < 0.95 and inputs["thermal"].std() > 0.01, "a real thermal image"


def test_scale_and_offset_turn_any_single_channel_encoding_into_kelvin(predictor, random_checkpoint5, dataset,
                                                                       monkeypatch):
    root, K = dataset
    _, thermal = stored_frame(root)
    info = camera_info.k_to_camera_info(K, (64, 64))

    def thermal_input(array, encoding, **values):
        engine = engine_for(predictor, random_checkpoint5, **{"rgb.enabled": False, **values})
        return network_inputs(engine, monkeypatch, {"thermal": images.numpy_to_image(array, encoding)},
                              {"thermal": info})["thermal"]

    reference = thermal_input(thermal, "mono16")
    kelvin = thermal.astype(np.float32) * np.float32(0.01)
    # raw counts of a camera whose calibration is K = 0.01 * counts + 200
    np.testing.assert_allclose(thermal_input((thermal - 20000).astype(np.uint16), "16UC1", **{"thermal.offset": 200.0}),
                               reference, atol=1e-5)
    np.testing.assert_allclose(thermal_input(kelvin, "32FC1", **{"thermal.scale": 1.0}), reference, atol=1e-5)
    assert thermal_input(kelvin, "32FC1").max() == 0.0, "Kelvin read as centi-Kelvin is below the 250 K floor"
    engine = engine_for(predictor, random_checkpoint5, **{"rgb.enabled": False})
    engine.reconfigure(validate({**ONLY_CAMERAS, "rgb.enabled": False, "thermal.scale": 1.0},
                                checkpoint_sensors(str(random_checkpoint5))))  # what `ros2 param set` does
    message = images.numpy_to_image(kelvin, "32FC1")
    np.testing.assert_allclose(network_inputs(engine, monkeypatch, {"thermal": message}, {"thermal": info})["thermal"],
                               reference, atol=1e-5)
    raw8 = np.arange(64 * 64, dtype=np.uint32).reshape(64, 64).astype(np.uint8)
    by_hand = np.clip((raw8 * 0.5 + 250.0 - 250.0) / 80.0, 0.0, 1.0)
    np.testing.assert_allclose(thermal_input(raw8, "mono8", **{"thermal.scale": 0.5, "thermal.offset": 250.0})[0],
                               by_hand, atol=1e-6)


def test_a_lower_resolution_thermal_camera_is_resampled_into_the_network_image(predictor, random_checkpoint5, dataset,
                                                                               monkeypatch):
    """A half-resolution camera with its own CameraInfo: each network pixel takes the camera pixel its ray
    falls in, so the encoding is the full-resolution one of the same (2x2-block) image."""
    root, K = dataset
    rgb, thermal = stored_frame(root)
    half = np.ascontiguousarray(thermal[::2, ::2])
    blocks = np.repeat(np.repeat(half, 2, axis=0), 2, axis=1)
    rgb_info = camera_info.k_to_camera_info(K, (64, 64))

    def inputs(image, thermal_info):
        engine = engine_for(predictor, random_checkpoint5)
        return network_inputs(engine, monkeypatch, {"rgb": images.numpy_to_image(rgb, "rgb8"),
                                                    "thermal": images.numpy_to_image(image, "mono16")},
                              {"rgb": rgb_info, "thermal": thermal_info})["thermal"]

    low = inputs(half, camera_info.k_to_camera_info(scale_intrinsics(K, (64, 64), (32, 32)), (32, 32)))
    assert low.shape == (3, 64, 64)
    np.testing.assert_array_equal(low, inputs(blocks, rgb_info))


def test_a_colour_image_on_the_thermal_topic_is_rejected_with_the_reason(predictor, random_checkpoint5, dataset):
    root, _ = dataset
    rgb, _ = stored_frame(root)
    engine = engine_for(predictor, random_checkpoint5)
    with pytest.raises(fields.ConversionError, match=r"cannot read encoding 'rgb8' \(3 channel\(s\)\) as a "
                                                          r"single-channel camera image; expected one of \['mono8'"):
        engine.accept("thermal", stamped(images.numpy_to_image(rgb, "rgb8")), 1.0)
    assert engine.counters.rejected["thermal"] == 1 and "single-channel" in engine.counters.last_error["thermal"]
    assert engine.health(1.1).modalities[-1].rejected == 1


def test_five_rig_sensors_run_the_five_modality_model_and_name_the_subset_in_its_order(predictor, random_checkpoint5,
                                                                                       monkeypatch):
    world = World(seed=3, size_hw=(64, 64), thermal=True)
    frame = world.frame_at(0.5)
    messages = frame_messages(frame, Time(sec=1), FIVE, RigEncoding())
    assert messages["thermal/image"].encoding == "mono16"
    np.testing.assert_array_equal(images.image_to_single_channel(messages["thermal/image"]),
                                  centikelvin(frame.thermal))
    info = messages["thermal/camera_info"]
    assert (info.height, info.width) == frame.thermal.shape
    engine = Engine(predictor, validate({"model.input_size": [64, 64]}, checkpoint_sensors(str(random_checkpoint5))))
    for sensor in ("rgb", "depth", "thermal"):
        engine.accept_camera_info(sensor, messages[f"{sensor}/camera_info"])
    topics = {"rgb": "rgb/image", "depth": "depth/image", "event": "event/image", "lidar": "lidar/points",
              "thermal": "thermal/image"}
    for sensor, topic in topics.items():
        engine.accept(sensor, messages[topic], 1.0)
    result = engine.run(engine.due(1.01)[0], 1.01)
    assert result.subset == FIVE
    assert output_messages(result, ["subset"], engine.palette)["subset"].data == "rgb+depth+event+lidar+thermal"
    statuses = [m.name for m in engine.health(1.02).modalities]
    assert statuses == list(FIVE)


def test_dropouts_and_phases_take_the_fifth_sensor():
    schedule = parse_dropouts("thermal:8-14,all:20-21", FIVE)
    assert [d.modality for d in schedule] == ["thermal", *FIVE]
    names = [p.name for p in phases(schedule, 25.0, FIVE)]
    assert names == ["rgb+depth+event+lidar+thermal", "rgb+depth+event+lidar", "rgb+depth+event+lidar+thermal",
                     "none", "rgb+depth+event+lidar+thermal"]
    with pytest.raises(ValueError, match="unknown modality 'thermal' \\(one of rgb, depth, event, lidar, all\\)"):
        parse_dropouts("thermal:1-2")


def test_a_five_sensor_bag_is_recorded_and_evaluated_over_the_models_subsets(tmp_path, predictor, random_checkpoint5,
                                                                             capsys):
    bag = tmp_path / "rig5"
    counts = record(bag, duration=1.0, fps=10.0, size=(64, 64), modalities=FIVE, progress=False)
    assert counts[RIG_PREFIX + "thermal/image"] == counts[RIG_PREFIX + "thermal/camera_info"] == 10
    sensors = checkpoint_sensors(str(random_checkpoint5))
    keys = topic_keys(FIVE)
    assert keys == (*FIVE, "rgb_info", "depth_info", "thermal_info", "gt")
    config = validate({**load_param_file(ROOT / "config" / "charm.param.yaml"), "model.input_size": [64, 64]}, sensors)
    evaluator = BagEvaluator(predictor, config, default_topics(keys), parse_dropouts("thermal:0.5-0.8", FIVE))
    for topic, msg, at, received in read_in_stamp_order(bag, set(default_topics(keys).values())):
        evaluator.feed(topic, msg, at, received)
    evaluator.finish()
    report = evaluator.report(0.0, counts)
    assert list(report.subsets) == ["rgb+depth+event+lidar", "rgb+depth+event+lidar+thermal"], "the model's order"
    assert report.subsets["rgb+depth+event+lidar"].frames == 3 and report.dropped_by_schedule["thermal"] == 3
    order = [subset_name(s, FIVE) for s in all_subsets(FIVE)]
    assert len(order) == 31 and order.index("rgb+depth+event+lidar") < order.index("rgb+depth+event+lidar+thermal")

    with pytest.raises(SystemExit) as done:  # the checkpoint's fifth sensor has its own flags
        bag_eval_main([str(bag), "--checkpoint", str(random_checkpoint5), "--device", "cpu", "--thermal", "/no/such"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "not in the bag: --thermal /no/such" in err
    out = tmp_path / "eval.json"
    assert bag_eval_main([str(bag), "--checkpoint", str(random_checkpoint5), "--device", "cpu", "--json", str(out),
                          "--thermal-camera-info", RIG_PREFIX + "thermal/camera_info",
                          "--dropouts", "thermal:0-0.3"]) == 0
    result = json.loads(out.read_text())
    assert set(result["subsets"]) == {"rgb+depth+event+lidar", "rgb+depth+event+lidar+thermal"}
    assert result["sensors"]["thermal"]["in_frames"] == 7
