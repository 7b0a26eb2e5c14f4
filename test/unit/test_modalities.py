"""The modality registry, the model's modality order and the intensity / angle encoders."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from charm_core.encoders import (FrameEncoder, encode_angle, encode_intensity, encode_sincos, frame_to_network,
                                 to_physical)
from charm_core.modalities import (BUILTIN, MODALITIES, ModalitySpec, all_subsets, canonical, resolve_modalities,
                                   subset_name)
from charm_core.model import ModelConfig
from charm_core.train.config import load_config


def test_builtin_kinds_and_deliver_default():
    assert MODALITIES == ("rgb", "depth", "event", "lidar")
    assert {m: BUILTIN[m].kind for m in BUILTIN} == {
        "rgb": "color", "depth": "depth", "event": "event", "lidar": "lidar", "thermal": "intensity",
        "nir": "intensity", "dolp": "intensity", "aolp": "angle"}
    assert BUILTIN["thermal"].range == (250.0, 330.0) and BUILTIN["thermal"].scale == 0.01
    assert ModelConfig().modalities == MODALITIES


def test_a_new_modality_of_an_existing_kind_is_configuration():
    specs = resolve_modalities(["rgb", {"name": "nir2", "kind": "intensity", "range": [0, 1]}, "thermal"],
                               {"thermal": {"kind": "intensity", "percentiles": [1, 99]}})
    assert [s.name for s in specs] == ["rgb", "nir2", "thermal"]
    assert specs[1] == ModalitySpec("nir2", "intensity", range=(0.0, 1.0))
    assert specs[2].percentiles == (1.0, 99.0) and specs[2].range is None
    cfg = ModelConfig(modalities=("lidar", {"name": "swir", "kind": "intensity", "range": [0.1, 0.9]}, "aolp"))
    assert cfg.modalities == ("lidar", "swir", "aolp")
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.specs[1].range == (0.1, 0.9) and again.specs[2] == BUILTIN["aolp"]
    recipe = load_config(None, ["modalities=[rgb, {name: nir2, kind: intensity, range: [0, 1]}]", "steps=10",
                                "warmup_steps=0"])
    assert recipe.modalities == ("rgb", "nir2") and recipe.model_config().specs[1].kind == "intensity"


@pytest.mark.parametrize("entries,specs,message", [
    (["rgb", "sonar"], None, r"unknown modalities \['sonar'\]"),
    (["rgb", "rgb"], None, "repeated"),
    ([{"name": "rgb", "kind": "intensity", "range": [0, 1]}], None, "built in as kind color"),
    ([{"name": "x", "kind": "intensity"}], None, "exactly one of range"),
    ([{"name": "x", "kind": "intensity", "range": [1, 0]}], None, "low < high"),
    ([{"name": "x", "kind": "radar"}], None, "kind 'radar'"),
    ([{"name": "X+y", "kind": "lidar"}], None, "lower-case"),
    ([{"name": "x", "kind": "lidar", "scale": 2}], None, "scale / offset apply"),
    ([{"name": "x", "kind": "angle", "range": [0, 1]}], None, "range / percentiles apply"),
    ([{"name": "x", "kind": "intensity", "range": [0, 1], "gain": 2}], None, "unknown spec keys"),
    (["rgb"], {"nir": {"kind": "intensity", "range": [0, 1]}}, "not among the modalities"),
])
def test_bad_modality_configuration_is_a_clear_error(entries, specs, message):
    with pytest.raises(ValueError, match=message):
        resolve_modalities(entries, specs)


def test_subsets_and_names_follow_the_models_order():
    order = ("thermal", "rgb", "nir", "aolp", "lidar", "depth")
    subsets = all_subsets(order)
    assert len(subsets) == 2 ** 6 - 1 and len(set(subsets)) == 63
    assert subsets[:6] == [(m,) for m in order] and subsets[-1] == order
    assert subset_name(["depth", "thermal", "rgb"], order) == "thermal+rgb+depth"
    assert subset_name(["lidar", "rgb"]) == "rgb+lidar", "DELIVER's order by default (what charm_ros uses)"
    assert canonical(["aolp", "thermal"], order) == ("thermal", "aolp")
    with pytest.raises(ValueError, match="unknown modalities"):
        subset_name(["event"], order)
    assert len(all_subsets(("rgb",))) == 1


def test_intensity_fixed_range_robust_range_and_no_data():
    thermal = BUILTIN["thermal"]
    stored = np.array([[25000, 29000], [33000, 0]], np.uint16)          # centi-Kelvin
    kelvin = to_physical(stored, thermal)
    np.testing.assert_allclose(kelvin, [[250.0, 290.0], [330.0, 0.0]], rtol=1e-6)
    x = encode_intensity(kelvin, thermal)
    assert x.shape == (2, 2, 3) and x.dtype == np.float32 and np.array_equal(x[..., 0], x[..., 2])
    np.testing.assert_allclose(x[..., 0], [[0.0, 0.5], [1.0, 0.0]], atol=1e-6)
    nir = BUILTIN["nir"]
    np.testing.assert_allclose(to_physical(np.array([[0, 255]], np.uint8), nir), [[0.0, 1.0]])
    np.testing.assert_allclose(to_physical(np.array([[65535, 13107]], np.uint16), nir), [[1.0, 0.2]], rtol=1e-6)
    robust = ModalitySpec("r", "intensity", percentiles=(0, 100))
    np.testing.assert_allclose(encode_intensity(np.array([[10.0, 20.0], [30.0, np.nan]]), robust)[..., 0],
                               [[0.0, 0.5], [1.0, 0.0]], atol=1e-6)
    assert encode_intensity(np.full((2, 2), 7.0), robust).max() == 0.0, "a flat image has no contrast"
    offset = ModalitySpec("o", "intensity", range=(0, 10), scale=0.5, offset=-1.0)
    np.testing.assert_allclose(to_physical(np.array([[2, 22]], np.uint16), offset), [[0.0, 10.0]])


def test_angle_is_sin_cos_sin_in_unit_range():
    x = encode_angle(np.array([[0.0, math.pi / 2], [math.pi, np.nan]]))
    assert x.shape == (2, 2, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], [0.5, 1.0, 0.5], atol=1e-6)     # sin 0, cos 1
    np.testing.assert_allclose(x[0, 1], [1.0, 0.5, 1.0], atol=1e-6)     # sin 1, cos 0
    np.testing.assert_allclose(x[1, 0], [0.5, 0.0, 0.5], atol=1e-6)     # cos -1
    assert x[1, 1].max() == 0.0, "no measurement -> 0"
    np.testing.assert_allclose(encode_sincos(np.array([[-1.0]]), np.array([[0.6]]))[0, 0], [0.0, 0.8, 0.0], atol=1e-6)
    np.testing.assert_allclose(to_physical(np.array([[65535]], np.uint16), BUILTIN["aolp"]), [[math.pi]], rtol=1e-6)


def test_frame_to_network_by_kind():
    img = np.full((2, 2, 3), 255, np.uint8)
    t = encode_intensity(np.full((2, 2), 290.0), BUILTIN["thermal"])
    out = frame_to_network({"rgb": img, "lidar": img, "thermal": t})
    assert out["rgb"].max() > 2.0 and out["lidar"].max() == 1.0
    assert out["thermal"].shape == (3, 2, 2) and np.allclose(out["thermal"], 0.5)
    specs = {s.name: s for s in resolve_modalities([{"name": "cam2", "kind": "color"}, "depth"])}
    assert frame_to_network({"cam2": img}, specs)["cam2"].max() > 2.0, "a second colour camera: ImageNet too"
    with pytest.raises(ValueError, match="unknown modalities"):
        frame_to_network({"cam2": img})


def test_frame_encoder_registers_single_channel_cameras():
    """A half-resolution thermal camera with the RGB camera's optics lands on the same network pixels."""
    K = np.array([[8.0, 0, 3.5], [0, 8.0, 3.5], [0, 0, 1]])
    kelvin = np.full((4, 4), 250.0, np.float32)
    kelvin[1, 2] = 330.0                                 # network pixels 2..3 x 4..5 see it
    angle = np.zeros((8, 8), np.float32)
    out = FrameEncoder((8, 8)).encode(K=K, image_hw=(8, 8), cameras={
        "thermal": (BUILTIN["thermal"], kelvin), "aolp": (BUILTIN["aolp"], angle)})
    hot = out["thermal"][..., 0]
    assert out["thermal"].dtype == np.float32 and hot.sum() == 4 and hot[2:4, 4:6].min() == 1.0
    np.testing.assert_allclose(out["aolp"][0, 0], [0.5, 1.0, 0.5])
    with pytest.raises(ValueError, match="intensity or angle"):
        FrameEncoder((8, 8)).encode(K=K, image_hw=(8, 8), cameras={"lidar": (BUILTIN["lidar"], angle)})
