"""Synthetic street world: determinism, sensor models and the complementarity the model must learn."""
import filecmp
import json

import cv2
import numpy as np
import pytest

from charm_core.classes import CLASS_ID, DELIVER_CLASSES, IGNORE_INDEX
from charm_core.data.synthetic import CASES, CONDITIONS, World
from charm_core.data.synthetic.export import FRAMES_PER_SEQUENCE, plan, write_dataset
from charm_core.data.synthetic.render_ahead import CHUNK, render_ahead
from charm_core.encoders import FrameEncoder, project_points
from charm_core.encoders.geometry import transform_points

SIZE = (128, 128)


def _encode(frame):
    return FrameEncoder(frame.rgb.shape[:2], frame.geometry).encode(
        K=frame.K, image_hw=frame.rgb.shape[:2], rgb=frame.rgb, depth=frame.depth, event=frame.event,
        lidar=frame.lidar)


def _luminance(rgb):
    return rgb.astype(float) @ np.array([0.299, 0.587, 0.114])


@pytest.fixture(scope="module")
def sun_frames():
    return [World(seed, size_hw=SIZE).frame_at(2.0) for seed in range(4)]


def test_frame_contract(sun_frames):
    f = sun_frames[0]
    h, w = SIZE
    assert f.rgb.shape == (h, w, 3) and f.rgb.dtype == np.uint8
    assert f.depth.shape == (h, w) and f.depth.dtype == np.float32 and f.depth.min() >= 0
    assert f.event.shape == (h, w, 3) and f.event.dtype == np.uint8
    assert f.lidar.ndim == 2 and f.lidar.shape[1] == 4 and f.lidar.dtype == np.float32 and len(f.lidar) > 1000
    assert 0 <= f.lidar[:, 3].min() and f.lidar[:, 3].max() <= 1
    assert f.labels.shape == (h, w) and f.labels.dtype == np.uint8
    assert set(np.unique(f.labels)) <= set(range(len(DELIVER_CLASSES))) | {IGNORE_INDEX}
    assert f.K[0, 2] == (w - 1) / 2 and f.K[1, 2] == (h - 1) / 2
    assert (f.depth[f.labels == CLASS_ID["Sky"]] == 0).all(), "no depth return from the sky"


def test_same_seed_same_frames_different_seed_different_street():
    a, b = World(11, size_hw=SIZE).frame_at(1.3), World(11, size_hw=SIZE).frame_at(1.3)
    for name in ("rgb", "depth", "event", "lidar", "labels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.labels, World(12, size_hw=SIZE).frame_at(1.3).labels)


def test_frames_iterates_the_drive_and_matches_random_access():
    frames = list(World(5, size_hw=(64, 64), fps=5.0).frames(3))
    assert [f.stamp for f in frames] == [0.0, 0.2, 0.4]
    assert not np.array_equal(frames[0].rgb, frames[2].rgb), "the car moves"
    fresh = World(5, size_hw=(64, 64), fps=5.0).frame_at(0.4)      # no previous render to reuse
    for name in ("rgb", "depth", "event", "lidar", "labels"):
        np.testing.assert_array_equal(getattr(frames[2], name), getattr(fresh, name))


def test_frames_rendered_ahead_in_workers_are_the_live_drive_in_order():
    args = dict(seed=4, size_hw=(48, 64), condition="night", fps=5.0, thermal=True)
    count = CHUNK + 3  # two chunks: the second starts without the first's camera render
    calls = []
    ahead = render_ahead(args, count, workers=2, progress=lambda done, total: calls.append((done, total)))
    live = World(**args)
    assert [f.stamp for f in ahead] == [k / 5.0 for k in range(count)]
    for k in (0, CHUNK - 1, CHUNK, count - 1):
        expected = live.frame_at(k / 5.0)
        for name in ("rgb", "depth", "event", "lidar", "labels", "thermal"):
            np.testing.assert_array_equal(getattr(ahead[k], name), getattr(expected, name), err_msg=f"{name} {k}")
    assert calls == [(CHUNK, count), (count, count)]
    assert render_ahead(args, 0) == []
    with pytest.raises(ValueError, match="condition"):
        render_ahead(dict(args, condition="hail"), 2)


def test_labels_follow_the_pinhole_camera(sun_frames):
    """Ground-truth check of the renderer: the road's depth under a level camera is h * f / (v - cy)."""
    w = World(0, size_hw=SIZE, camera_height=1.6)
    f = w.frame_at(2.0)
    rows = np.arange(SIZE[0])
    expected = 1.6 * f.K[1, 1] / (rows - f.K[1, 2])
    road = f.labels == CLASS_ID["Road"]
    for r in range(100, 128):
        cols = road[r] & (f.depth[r] > 0)
        if cols.sum() > 5:
            assert np.median(f.depth[r, cols]) == pytest.approx(expected[r], rel=0.03)


def test_events_are_zero_for_a_static_scene_and_camera():
    world = World(3, size_hw=SIZE, speed=0.0, moving_objects=False)
    for f in world.frames(3):
        assert f.event.max() == 0
    assert world.frame_at(7.0).event.max() == 0
    moving = World(3, size_hw=SIZE).frame_at(1.0)
    assert np.count_nonzero(moving.event.any(axis=2)) > 500, "ego-motion makes edges fire"


def test_only_moving_objects_fire_events_for_a_parked_camera():
    f = World(3, size_hw=SIZE, speed=0.0).frame_at(2.0)
    fired = f.event.any(axis=2)
    movers = np.isin(f.labels, [CLASS_ID[c] for c in ("Cars", "Pedestrian", "TwoWheeler", "Bus", "Truck")])
    grown = cv2.dilate(movers.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert fired.any() and not fired[~grown].any()


def test_road_lines_differ_from_road_in_lidar_intensity_not_in_depth(sun_frames):
    intensity_gap, depth_gaps = [], []
    for f in sun_frames:
        enc = _encode(f)
        road, line = f.labels == CLASS_ID["Road"], f.labels == CLASS_ID["RoadLine"]
        lid = enc["lidar"].astype(float)
        hit = lid[..., 0] > 0
        if (line & hit).sum() < 5:
            continue
        intensity_gap.append(lid[line & hit, 1].mean() - lid[road & hit, 1].mean())
        # depth encoding, compared row by row (on a flat road it depends on the row only), away from
        # other surfaces that the normal estimate would average in
        hha = enc["depth"].astype(float)
        flat = cv2.erode((road | line).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & (hha[..., 0] > 0)
        for r in range(f.labels.shape[0]):
            a, b = flat[r] & road[r], flat[r] & line[r]
            if a.sum() >= 3 and b.sum() >= 2:
                depth_gaps.append(np.abs(hha[r][b].mean(0) - hha[r][a].mean(0)))
    assert len(intensity_gap) >= 3 and len(depth_gaps) >= 30
    assert min(intensity_gap) > 30, "retro-reflective paint is bright for the LiDAR (codes of 255)"
    assert np.mean(depth_gaps, axis=0).max() < 1.5, "paint is invisible to depth (mean gap, codes of 255)"


def _road_sidewalk_contrast(frame):
    lum = _luminance(frame.rgb)
    road, walk = frame.labels == CLASS_ID["Road"], frame.labels == CLASS_ID["SideWalk"]
    return abs(lum[walk].mean() - lum[road].mean())


def test_night_kills_rgb_contrast_but_not_depth_or_lidar():
    day, night = [], []
    for seed in range(4):
        d = World(seed, size_hw=SIZE).frame_at(2.0)
        n = World(seed, size_hw=SIZE, condition="night").frame_at(2.0)
        np.testing.assert_array_equal(d.depth, n.depth)
        np.testing.assert_array_equal(d.lidar, n.lidar)
        np.testing.assert_array_equal(d.labels, n.labels)
        day.append(_road_sidewalk_contrast(d))
        night.append(_road_sidewalk_contrast(n))
    assert np.mean(night) < 0.5 * np.mean(day), (day, night)


def test_fog_and_rain_degrade_lidar_and_camera(sun_frames):
    sun = sun_frames[1]
    fog = World(1, size_hw=SIZE, condition="fog").frame_at(2.0)
    rain = World(1, size_hw=SIZE, condition="rain").frame_at(2.0)
    far = sun.depth > 25
    assert _luminance(fog.rgb)[far].std() < 0.5 * _luminance(sun.rgb)[far].std(), "fog washes out the distance"
    def returns_beyond(f, metres):   # spurious near returns from drops are within 13 m
        return (np.linalg.norm(f.lidar[:, :3], axis=1) > metres).sum()

    assert returns_beyond(rain, 13) < 0.93 * returns_beyond(sun, 13)
    assert returns_beyond(fog, 30) < 0.5 * returns_beyond(sun, 30)
    assert returns_beyond(fog, 50) < 0.05 * returns_beyond(sun, 50)
    assert rain.lidar[:, 3].mean() < sun.lidar[:, 3].mean()


def test_lidar_has_a_ring_pattern_and_matches_depth(sun_frames):
    f = sun_frames[2]
    pts = f.lidar[:, :3].astype(float)
    elev = np.degrees(np.arctan2(pts[:, 2], np.hypot(pts[:, 0], pts[:, 1])))
    rings = np.unique(np.round(elev, 2))
    assert 16 <= len(rings) <= 32, "a 32-beam scanner, not a dense depth map"
    assert np.all(np.diff(rings) > 1.0)
    cam = transform_points(f.geometry.T_cam_lidar, pts)
    u, v, z = project_points(cam, f.K)
    ok = np.isfinite(u) & (z > 1) & (z < 40)
    col, row = np.rint(u[ok]).astype(int), np.rint(v[ok]).astype(int)
    inside = (col >= 0) & (col < SIZE[1]) & (row >= 0) & (row < SIZE[0])
    d = f.depth[row[inside], col[inside]]
    lz = z[ok][inside]
    both = d > 0
    rel = np.abs(d[both] - lz[both]) / lz[both]
    assert both.sum() > 300 and np.median(rel) < 0.03, "extrinsics + intrinsics put LiDAR points on the depth"


def test_sensor_failure_cases():
    base = World(2, size_hw=SIZE).frame_at(2.0)
    frames = {c: World(2, size_hw=SIZE, case=c).frame_at(2.0) for c in CASES}
    bright = frames["overexposure"].rgb.mean(axis=2)
    assert bright.mean() > base.rgb.mean() + 60
    assert (bright >= 240).mean() > (base.rgb.mean(axis=2) >= 240).mean() + 0.15
    assert frames["underexposure"].rgb.mean() < 0.3 * base.rgb.mean()

    def sharpness(img):   # mean gradient after mild smoothing, so sensor noise does not count as detail
        g = cv2.GaussianBlur(img.astype(np.float32).mean(axis=2), (0, 0), 1.0)
        return np.hypot(np.diff(g, axis=0)[:, :-1], np.diff(g, axis=1)[:-1]).mean()

    assert sharpness(frames["motionblur"].rgb) < 0.8 * sharpness(base.rgb)
    jitter = np.linalg.norm(frames["lidarjitter"].lidar[:, :3] - base.lidar[:, :3], axis=1)
    assert len(frames["lidarjitter"].lidar) == len(base.lidar) and 0.15 < np.median(jitter) < 0.6
    ev = frames["eventlowres"].event
    assert np.array_equal(ev, np.repeat(np.repeat(ev[::4, ::4], 4, axis=0), 4, axis=1)), "4x4 blocks"
    for c in CASES:
        np.testing.assert_array_equal(frames[c].labels, base.labels)


def test_set_condition_changes_appearance_not_the_street():
    world = World(4, size_hw=SIZE)
    day = world.frame_at(1.0)
    world.set_condition("rain", "motionblur")
    wet = world.frame_at(1.0)
    assert (wet.condition, wet.case) == ("rain", "motionblur")
    np.testing.assert_array_equal(day.labels, wet.labels)
    assert not np.array_equal(day.rgb, wet.rgb)
    with pytest.raises(ValueError, match="unknown condition"):
        world.set_condition("snow")
    with pytest.raises(ValueError, match="unknown case"):
        World(0, case="blur")
    with pytest.raises(ValueError, match="t >= 0"):
        world.frame_at(-1.0)


def test_plan_spreads_conditions_and_cases():
    specs = plan(0, {"train": 500, "val": 30, "test": 0})
    train = [s for s in specs if s.split == "train"]
    assert sum(s.frames for s in train) == 500 and len(train) == 500 // FRAMES_PER_SEQUENCE
    assert {s.condition for s in train} == set(CONDITIONS)
    assert {s.case for s in train} == set(CASES) | {None}
    assert sum(s.frames for s in specs if s.split == "val") == 30
    assert len({s.world_seed for s in specs}) == len(specs)
    assert plan(0, {"train": 500}) == plan(0, {"train": 500}) != plan(1, {"train": 500})


def test_dataset_is_byte_identical_for_a_seed(tmp_path):
    a = write_dataset(tmp_path / "a", {"train": 4, "val": 2, "test": 1}, (64, 64), seed=9, workers=2, progress=False)
    write_dataset(tmp_path / "b", {"train": 4, "val": 2, "test": 1}, (64, 64), seed=9, workers=1, progress=False)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 7 * 6 + 1
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", [str(p) for p in files_a], shallow=False)
    assert not mismatch and not errors
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["seed"] == 9 and meta["counts"] == {"train": 4, "val": 2, "test": 1} == a["counts"]
    depth_png = next((tmp_path / "a" / "depth").rglob("*.png"))
    assert cv2.imread(str(depth_png), cv2.IMREAD_UNCHANGED).dtype == np.uint16


@pytest.mark.slow
def test_many_classes_are_regularly_visible(tmp_path):
    meta = write_dataset(tmp_path, {"train": 120}, (128, 128), seed=3, workers=2, progress=False)
    pixels = meta["class_pixels"]
    total = sum(pixels.values())
    frequent = [c for c in DELIVER_CLASSES if pixels[c] / total >= 0.005]
    assert len(frequent) >= 12, {c: round(100 * pixels[c] / total, 2) for c in DELIVER_CLASSES}


def test_cli_writes_dataset_stats_and_preview(tmp_path, capsys):
    from charm_core.data.synth_cli import main
    from charm_core.visualize import COL_LABEL_H, ROW_LABEL_W

    assert main(["--out", str(tmp_path / "ds"), "--train", "2", "--test", "1", "--size", "32", "--workers", "1",
                 "--stats", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "wrote 3 frames" in out and "| Sky |" in out and "classes cover >= 0.5%" in out
    assert len(list((tmp_path / "ds" / "semantic").rglob("*_semantic_front.png"))) == 3
    assert main(["--preview", str(tmp_path / "sheet.png"), "--size", "32", "--seed", "1"]) == 0
    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    assert sheet.shape == (COL_LABEL_H + len(CONDITIONS) * 32, ROW_LABEL_W + 5 * 32, 3)
    with pytest.raises(SystemExit):
        main([])
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x")])          # no frames requested


def test_small_sets_cover_every_condition():
    """`charm-synth --train 40 --val 10` gave no sun frames in train and only cloud in val."""
    from charm_core.data.synthetic.conditions import CONDITIONS
    from charm_core.data.synthetic.export import plan

    for seed in range(5):
        specs = plan(seed, {"train": 50, "val": 50})
        for split in ("train", "val"):
            conditions = [s.condition for s in specs if s.split == split]
            assert sorted(conditions) == sorted(CONDITIONS), (seed, split, conditions)
    big = plan(0, {"train": 5000})
    blocks = [{s.condition for s in big[i:i + 5]} for i in range(0, 500, 5)]
    assert all(b == set(CONDITIONS) for b in blocks), "every run of five sequences has each condition"
    assert plan(3, {"train": 200}) == plan(3, {"train": 200}), "deterministic per seed"
