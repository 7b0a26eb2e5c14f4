"""Node parameters: the YAML file and the declared table agree; bad values fail with the parameter's name."""
import numpy as np
import pytest

from charm_ros.runtime.health import ERROR, OK, WARN, ModalityHealth, PipelineHealth, assess
from charm_core.encoders import SensorGeometry
from charm_ros.runtime.node_config import PARAMETERS, SPECS, ConfigError, parse_palette, resolve_palette, validate
from charm_ros.runtime.parameters import load_param_file
from charm_ros.runtime.pipeline import PipelineConfig
from charm_ros.runtime.sync import ModalityConfig, SyncConfig
from support import ROOT


def test_param_file_lists_exactly_the_declared_parameters_and_validates():
    values = load_param_file(ROOT / "config" / "charm.param.yaml")
    assert set(values) == {p.name for p in PARAMETERS}
    cfg = validate(values)
    assert cfg.enabled == ("rgb", "depth", "event", "lidar")
    assert [m.name for m in cfg.sync.modalities] == ["rgb", "depth", "event", "lidar"]
    assert cfg.geometry.T_cam_lidar[1, 3] == pytest.approx(-0.3)
    assert cfg.checkpoint.endswith("models/charm_tiny_synthetic.safetensors")


def test_param_file_values_are_the_spec_defaults_but_the_rigs_mounting():
    values = load_param_file(ROOT / "config" / "charm.param.yaml")
    assert {name for name, value in values.items() if value != SPECS[name].default} == {"geometry.lidar_to_camera"}


def test_the_engines_dataclass_defaults_are_the_spec_defaults():
    """A SyncConfig, PipelineConfig or SensorGeometry built without the node (tests, benches, the bag
    tools' library use) behaves as a node with default parameters."""
    cfg = validate({})
    sync, pipeline, geometry = SyncConfig([ModalityConfig("rgb")]), PipelineConfig(), SensorGeometry()
    assert (ModalityConfig("rgb").time_offset, ModalityConfig("rgb").stale_timeout) == (
        SPECS["rgb.time_offset"].default, SPECS["rgb.stale_timeout"].default)
    for name in ("max_skew", "timeout", "buffer_size"):
        assert getattr(sync, name) == getattr(cfg.sync, name), name
    for name in ("min_confidence", "lidar_intensity_field", "lidar_intensity_scale", "output_resolution"):
        assert getattr(pipeline, name) == getattr(cfg.pipeline, name), name
    assert (geometry.camera_height, geometry.camera_pitch) == (cfg.geometry.camera_height, cfg.geometry.camera_pitch)


def test_priority_orders_only_enabled_modalities():
    cfg = validate({"rgb.enabled": False, "sync.reference_priority": ["lidar", "depth"]})
    assert [m.name for m in cfg.sync.modalities] == ["lidar", "depth", "event"]


@pytest.mark.parametrize("values,match", [
    ({f"{m}.enabled": False for m in ("rgb", "depth", "event", "lidar")}, "every modality is disabled"),
    ({"sync.reference_priority": ["rgb", "sonar"]}, "sync.reference_priority"),
    ({"model.device": "tpu"}, "model.device"),
    ({"outputs.overlay_alpha": 1.5}, "outputs.overlay_alpha"),
    ({"outputs.min_confidence": 1.2}, r"outputs.min_confidence must be in \[0, 1\]"),
    ({"model.precision": "int8"}, "model.precision"),
    ({"sync.max_skew": -0.1}, "sync.max_skew"),
    ({"rgb.stale_timeout": "soon"}, "rgb.stale_timeout"),
    ({"geometry.lidar_to_camera": list(np.eye(4).ravel() * 2)}, "rigid"),
    ({"geometry.lidar_to_camera": [1.0, 0.0]}, "16 numbers"),
    ({"model.input_size": [16, 16]}, "model.input_size"),
    ({"no.such": 1}, "unknown parameters"),
])
def test_bad_values_name_the_parameter(values, match):
    with pytest.raises(ConfigError, match=match):
        validate(values)


def _modality(name, alive, rejected=0):
    return ModalityHealth(name, alive, 0.05 if alive else 3.0, 10.0 if alive else 0.0, 100, 90, 10, rejected,
                          "bad encoding" if rejected else "")


def _health(alive, model_error=""):
    mods = [_modality(m, m in alive) for m in ("rgb", "depth", "event", "lidar")]
    return PipelineHealth(enabled=("rgb", "depth", "event", "lidar"), modalities=mods, subset=tuple(alive),
                          frames=10, frames_dropped=0, frames_skipped=0, encode_ms=4.0, inference_ms=30.0,
                          end_to_end_ms=60.0, output_rate_hz=10.0, model_error=model_error)


def test_diagnostic_levels():
    assert assess(_health(("rgb", "depth", "event", "lidar")))[0].level == OK
    degraded = assess(_health(("rgb", "lidar")))
    assert degraded[0].level == WARN and "no depth, event" in degraded[0].message
    assert [r.level for r in degraded[1:]] == [OK, WARN, WARN, OK, OK]  # the sensors, then the outputs
    assert assess(_health(()))[0].level == ERROR
    frozen = _health(("rgb", "depth", "event", "lidar"))
    frozen.clock_error = "use_sim_time is true but no /clock has arrived"
    assert assess(frozen)[0].level == ERROR and "/clock" in assess(frozen)[0].message
    failed = assess(_health(("rgb",), model_error="RuntimeError: boom"))
    assert failed[0].level == ERROR and "boom" in failed[0].message
    assert failed[0].values["inference_ms"] == "30.0"


def test_a_sensor_whose_stamps_stopped_advancing_is_reported_as_such():
    health = _health(("rgb", "event", "lidar"))
    health.modalities[1].stamps_refused = True   # depth: messages arrive, the sync refuses their stamps
    health.modalities[1].lag = 1.8e9              # e.g. zero stamps
    depth = assess(health)[2]
    assert depth.level == WARN and "stale for 3.0 s" in depth.message and "1800000000.000 s" in depth.message
    assert "depth.time_offset" in depth.message and depth.values["stamp_lag_s"] == "1800000000.000"
    assert "stamps" not in assess(_health(("rgb",)))[2].message, "a silent sensor is just stale"
    health.modalities[1].age = None                # none of its messages was ever accepted
    assert assess(health)[2].message.startswith("no usable message: messages arrive")


def test_a_sensor_on_another_clock_is_named_with_its_offset_to_the_reference():
    """Alive but in no frame (stamps ahead): WARN, left out of 'running on', with the offset to set;
    refused for too-old stamps: the offset to the reference says which way the clocks disagree."""
    health = _health(("rgb", "depth", "event", "lidar"))
    health.reference = "rgb"
    health.modalities[1].unmatched_s, health.modalities[1].offset_s = 4.2, 2.0
    reports = assess(health)
    assert reports[0].level == WARN and reports[0].message == "degraded: running on rgb+event+lidar (depth unmatched)"
    assert reports[2].level == WARN and "in no frame for 4.2 s" in reports[2].message
    assert "2.000 s ahead of rgb's" in reports[2].message and "depth.time_offset" in reports[2].message
    assert reports[2].values["stamp_offset_s"] == "2.000" and reports[2].values["unmatched_s"] == "4.2"
    late = _health(("rgb", "event", "lidar"))
    late.reference = "rgb"
    late.modalities[1].stamps_refused, late.modalities[1].offset_s = True, -30.0
    assert "30.000 s behind rgb's" in assess(late)[2].message


def test_a_matched_sensor_on_another_clock_is_flagged_beyond_latency_differences():
    """0.7 s ahead still finds partners (the buffer reaches back 1 s), but from another instant."""
    health = _health(("rgb", "depth", "event", "lidar"))
    health.reference = "rgb"
    health.modalities[3].offset_s = 0.7
    reports = assess(health)
    assert reports[0].level == WARN and "lidar stamps 0.700 s ahead of rgb's" in reports[0].message
    assert reports[4].level == WARN and "another instant" in reports[4].message
    health.modalities[3].offset_s = -0.2   # a LiDAR's sweep latency: no clock error
    assert assess(health)[0].level == OK and assess(health)[4].level == OK


def test_a_sensor_whose_every_message_is_rejected_says_so_not_no_message_yet():
    health = _health(("rgb", "event", "lidar"))
    depth = health.modalities[1]
    depth.age, depth.rejected, depth.last_error, depth.rejecting = None, 42, "unknown image encoding 'z16'", True
    report = assess(health)[2]
    assert report.level == WARN
    assert report.message == "no usable message: messages arrive, but are rejected: unknown image encoding 'z16'"
    depth.rejecting = False   # rejected long ago, silent since: just stale
    assert assess(health)[2].message == "no message yet"


def test_palette_parameter_is_hex_colours_one_per_class():
    assert validate({}).palette is None, "empty: the checkpoint's palette"
    np.testing.assert_array_equal(parse_palette("#804080, f423e8\n#000000"),
                                  [[128, 64, 128], [244, 35, 232], [0, 0, 0]])
    with pytest.raises(ConfigError, match="outputs.palette entry 1 is '#12345'"):
        validate({"outputs.palette": "#804080 #12345"})
    checkpoint = np.zeros((3, 3), np.uint8)
    assert resolve_palette(None, checkpoint) is not None and resolve_palette(None, checkpoint).shape == (3, 3)
    mine = parse_palette("#ff0000 #00ff00 #0000ff")
    assert resolve_palette(mine, checkpoint) is mine
    with pytest.raises(ConfigError, match="2 colours, the checkpoint 3 classes"):
        resolve_palette(parse_palette("#ff0000 #00ff00"), checkpoint)


def test_a_sensor_left_out_of_frames_is_named_and_all_left_out_is_an_error():
    """Alive but not usable (no CameraInfo for depth/LiDAR): not 'running on' it; nothing usable: ERROR."""
    health = _health(("rgb", "depth", "event", "lidar"))
    health.modalities[3].left_out = "no CameraInfo received yet (CameraInfo topics: /cam/info)"
    health.modalities[0].info_rejected, health.modalities[0].info_error = 7, "camera_info.k must be finite"
    reports = assess(health)
    assert reports[0].level == WARN and reports[0].message == "degraded: running on rgb+depth+event (lidar left out)"
    assert reports[4].level == WARN and reports[4].message.startswith("alive, but left out of frames: no CameraInfo")
    assert reports[1].level == OK and "CameraInfo rejected: camera_info.k must be finite" in reports[1].message
    assert reports[1].values["camera_info_rejected"] == "7" and reports[4].values["left_out"].startswith("no Camera")
    nothing = _health(("depth", "lidar"))
    for m in nothing.modalities[1], nothing.modalities[3]:
        m.left_out = "no CameraInfo received yet"
    assert assess(nothing)[0].level == ERROR and "none usable" in assess(nothing)[0].message


def test_clock_messages_show_both_lags_so_the_sensor_whose_clock_is_off_can_be_told():
    """RGB stamping in a device clock (time since boot) is the reference and the others look 'ahead':
    the lags against this computer's clock show that RGB is the one that is off."""
    health = _health(("rgb", "depth", "event", "lidar"))
    health.reference = "rgb"
    health.modalities[0].lag = 1.7e9
    health.modalities[1].lag, health.modalities[1].unmatched_s, health.modalities[1].offset_s = 0.004, 3.0, 1.7e9
    message = assess(health)[2].message
    assert "ahead of rgb's (arrival minus stamp: depth 0.004 s, rgb 1700000000.000 s)" in message
