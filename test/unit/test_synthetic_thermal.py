"""The synthetic thermal (LWIR) camera: physics it must show, its sensor model, its files."""
from __future__ import annotations

import filecmp
from pathlib import Path

import cv2
import numpy as np
import pytest

from charm_core.classes import CLASS_ID
from charm_core.data.deliver import DeliverDataset
from charm_core.data.synth_cli import main as synth_main
from charm_core.data.synthetic import World
from charm_core.data.synthetic import thermal as lwir
from charm_core.data.synthetic.conditions import WEATHER
from charm_core.data.synthetic.export import write_dataset
from charm_core.data.synthetic.materials import CLOTH, PLAIN, RUBBER, Surface
from charm_core.data.synthetic.primitives import Primitives
from charm_core.data.synthetic.raycast import GROUND
from charm_core.data.synthetic.shading import atmosphere


def _frame(condition: str, t: float = 1.0):
    return World(7, size_hw=(96, 96), condition=condition, thermal=True, start_x=300).frame_at(t)


@pytest.fixture(scope="module")
def frames():
    return {c: _frame(c) for c in ("sun", "night", "fog")}


def _mean(f, cls: str) -> float:
    sel = f.labels == CLASS_ID[cls]
    assert sel.sum() > 20, cls
    return float(f.thermal[sel].mean())


def test_contract_and_other_sensors_unchanged(frames):
    f = frames["sun"]
    assert f.thermal.shape == (96, 96) and f.thermal.dtype == np.float32
    assert 230 < f.thermal.min() and f.thermal.max() < 360
    plain = World(7, size_hw=(96, 96), condition="sun", start_x=300).frame_at(1.0)
    assert plain.thermal is None
    for m in ("rgb", "depth", "event", "lidar", "labels"):
        assert np.array_equal(getattr(plain, m), getattr(f, m)), m
    world = World(7, size_hw=(96, 96), condition="sun", thermal=True, start_x=300)
    assert np.array_equal(world.frame_at(1.0).thermal, world.thermal_at(1.0)), "same frame, same noise"
    with pytest.raises(ValueError, match="thermal=True"):
        World(7, size_hw=(32, 32)).thermal_at(0.0)


def test_sun_heats_the_road_paint_does_not_show_sky_is_cold(frames):
    day, night = frames["sun"], frames["night"]
    assert _mean(day, "Road") > _mean(day, "Vegetation") + 8, "asphalt in the sun vs transpiring leaves"
    assert abs(_mean(day, "Road") - _mean(day, "RoadLine")) < 1.5, "paint is nearly invisible in LWIR"
    rgb_gap = abs(day.rgb[day.labels == CLASS_ID["Road"]].mean() - day.rgb[day.labels == CLASS_ID["RoadLine"]].mean())
    assert rgb_gap > 40, "while the RGB camera sees the lines"
    for f in (day, night):
        assert _mean(f, "Sky") < _mean(f, "Building") - 15
    assert _mean(night, "Road") > lwir.AIR_K["night"], "the road keeps heat after dark"


def test_works_at_night_where_rgb_goes_dark(frames):
    day, night = frames["sun"], frames["night"]
    road, veg = (night.labels == CLASS_ID[c] for c in ("Road", "Vegetation"))
    rgb_gap = [abs(f.rgb[f.labels == CLASS_ID["Road"]].mean() - f.rgb[f.labels == CLASS_ID["Vegetation"]].mean())
               for f in (day, night)]
    assert night.rgb[road | veg].mean() < 30 and rgb_gap[1] < 0.5 * rgb_gap[0], "the camera sees little"
    assert night.thermal[road].mean() - night.thermal[veg].mean() > 2.5, "the heat the road stored still shows"
    assert night.thermal[night.labels == CLASS_ID["Sky"]].mean() < night.thermal[road].mean() - 25


def test_fog_attenuates_lwir_less_than_light():
    d = np.array([60.0])
    fog = WEATHER["fog"]                                    # visibility 30 m
    kept = (lwir.through_atmosphere(np.array([300.0], np.float32), d, fog, "fog") - lwir.AIR_K["fog"]) / \
        (300.0 - lwir.AIR_K["fog"])
    np.testing.assert_allclose(kept, np.exp(-60 / 150), rtol=1e-5)
    light = (atmosphere(np.ones((1, 3), np.float32), d, fog) - np.asarray(fog.haze)) / (1 - np.asarray(fog.haze))
    np.testing.assert_allclose(light[0], np.exp(-60 / 30), rtol=1e-4)


def _sample(material: list[int], cls: list[str], velocity: list[float]) -> lwir.SurfaceSample:
    n = len(material)
    prims = Primitives(np.zeros(n, np.int8), np.zeros((n, 3)), np.ones((n, 3)), np.array([CLASS_ID[c] for c in cls],
                       np.uint8), np.array(material, np.uint8), np.full((n, 3), 0.1, np.float32),
                       np.zeros(n, np.float32), np.array(velocity), np.zeros(n), np.zeros(n))
    surf = Surface(np.full((n, 3), 0.1, np.float32), np.zeros((n, 3), np.float32), np.zeros(n, np.float32),
                   prims.cls.copy(), np.zeros(n, bool))
    normals = np.tile([0.0, 1.0, 0.0], (n, 1))               # vertical faces, facing away from the sun
    return lwir.SurfaceSample(normals, np.ones(n), np.arange(n), prims, surf, np.zeros(n, np.float32))


def test_people_and_moving_tyres_are_warm_parked_cars_are_not():
    """Night, faces turned away from the sky (no solar load): hand-computed from the model's table."""
    s = _sample([RUBBER, RUBBER, CLOTH, PLAIN], ["Cars", "Cars", "Pedestrian", "Pedestrian"], [0.0, 9.0, 0.0, 0.0])
    t = lwir.surface_temperature(s, WEATHER["night"], "night", np.array([0.0, 0.0, 1.0]))
    air, sky = lwir.AIR_K["night"], lwir.AIR_K["night"] - 0.6 * lwir.SKY_DROP_K["night"]
    np.testing.assert_allclose(t, [0.9 * air + 0.1 * sky, 0.9 * (air + 14) + 0.1 * sky,
                                   0.98 * (0.55 * 306 + 0.45 * air) + 0.02 * sky, 0.98 * 306 + 0.02 * sky], rtol=1e-5)
    ground = _sample([0], ["Road"], [0.0])
    ground.prim[:] = GROUND
    assert lwir.surface_temperature(ground, WEATHER["night"], "night", np.array([0.0, 0.0, 1.0]))[0] == \
        pytest.approx(0.95 * (air + 3.0) + 0.05 * sky, rel=1e-5)


def test_sensor_has_half_resolution_and_small_noise():
    rng = np.random.default_rng(0)
    columns = lwir.column_pattern(3, 64)
    flat = lwir.sensor_image(np.full((64, 64), 290.0, np.float32), columns, rng)
    assert abs(flat.mean() - 290.0) < 0.1 and 0.02 < flat.std() < 0.3
    stripes = np.where(np.arange(64) % 2 == 0, 300.0, 280.0).astype(np.float32)[None].repeat(64, 0)
    seen = lwir.sensor_image(stripes, np.zeros_like(columns), rng)
    assert seen.std() < 1.0, "1-pixel detail is below the native resolution"
    edge = np.where(np.arange(64) < 32, 300.0, 280.0).astype(np.float32)[None].repeat(64, 0)
    assert lwir.sensor_image(edge, np.zeros_like(columns), rng)[:, 8].mean() == pytest.approx(300, abs=0.1)
    np.testing.assert_array_equal(lwir.centikelvin(np.array([290.004, 0.0, 1e4])), [29000, 0, 65535])


def test_written_as_centikelvin_and_loaded_by_the_deliver_loader(tmp_path: Path):
    write_dataset(tmp_path / "four", {"train": 2}, (48, 48), seed=2, workers=1, progress=False)
    write_dataset(tmp_path / "five", {"train": 2}, (48, 48), seed=2, workers=1, progress=False,
                  modalities=("rgb", "depth", "event", "lidar", "thermal"))
    assert not (tmp_path / "four" / "thermal").exists()
    four = sorted(p.relative_to(tmp_path / "four") for p in (tmp_path / "four").rglob("*.png"))
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "four", tmp_path / "five", [str(p) for p in four], shallow=False)
    assert not mismatch and not errors, "writing thermal changes no other file"
    files = sorted((tmp_path / "five").glob("thermal/*/train/*/*_thermal_front.png"))
    assert len(files) == 2
    stored = cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED)
    assert stored.dtype == np.uint16 and stored.shape == (48, 48) and 25000 < np.median(stored) < 32000
    ds = DeliverDataset(tmp_path / "five", "train", ["thermal"], size=(48, 48))
    x = ds[0][0]["thermal"].numpy()
    np.testing.assert_allclose(x[0], np.clip((stored / 100.0 - 250.0) / 80.0, 0, 1), atol=1e-5)


def test_cli_chooses_the_modalities(tmp_path: Path, capsys):
    assert synth_main(["--out", str(tmp_path), "--train", "1", "--size", "32", "--workers", "1", "--no-progress",
                       "--modalities", "thermal,lidar"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["lidar", "semantic", "thermal"]
    ds = DeliverDataset(tmp_path, "train", ["lidar", "thermal"], size=(32, 32))
    assert len(ds) == 1 and set(ds[0][0]) == {"lidar", "thermal"}, "frames found without img/"
    with pytest.raises(SystemExit):
        synth_main(["--out", str(tmp_path), "--train", "1", "--modalities", "rgb,sonar"])
    assert "sonar" in capsys.readouterr().err
