"""DELIVER-layout loader and training augmentation, on a hand-made tree with DELIVER's real naming
and on the synthetic writer's output."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from charm_core.classes import CLASS_ID, DELIVER_CLASSES
from charm_core.data.augment import AugmentConfig, augment, deliver_eval_resize, deliver_eval_shape, floor_nearest
from charm_core.data.deliver import DeliverDataset, deliver_labels, find_samples
from charm_core.data.synthetic.export import write_dataset
from charm_core.encoders import IMAGENET_MEAN, IMAGENET_STD

H, W = 16, 16


def _png(path: Path, rgb_or_gray: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = rgb_or_gray if rgb_or_gray.ndim == 2 else cv2.cvtColor(rgb_or_gray, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), img)


def _frame(root: Path, condition: str, split: str, seq: str, name: str, raw: np.ndarray, event_hw=(H, W)) -> None:
    """One DELIVER frame: img/hha/lidar/event/semantic as in the real release (3-channel PNGs)."""
    def where(folder, token):
        return root / folder / condition / split / seq / f"{name}_{token}_front.png"
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0] = 255                                   # pure red
    _png(where("img", "rgb"), rgb)
    hha = np.dstack([np.full((H, W), 10, np.uint8), np.full((H, W), 20, np.uint8), np.full((H, W), 30, np.uint8)])
    _png(where("hha", "depth"), hha)
    lidar = np.zeros((H, W, 3), np.uint8)
    lidar[3, 4] = (200, 100, 50)
    _png(where("lidar", "lidar"), lidar)
    event = (np.arange(event_hw[0] * event_hw[1]).reshape(event_hw) % 251).astype(np.uint8)
    _png(where("event", "event"), np.dstack([event, event, event]))
    sem = np.dstack([raw, raw[::-1], np.full_like(raw, 77)])   # only channel 0 (red) holds the ids
    _png(where("semantic", "semantic"), sem)


@pytest.fixture()
def tree(tmp_path):
    raw = np.zeros((H, W), np.uint8)
    raw[0, :5] = [0, 1, 7, 25, 255]                      # unlabelled, Building, Road, Truck, 255
    raw[1, 0] = 26                                       # not a DELIVER class
    _frame(tmp_path, "cloud", "train", "MAP_1_point20", "000100", raw)
    _frame(tmp_path, "night", "train", "MAP_1_point20_motionblur", "000101", raw, event_hw=(H // 4, W // 4))
    _frame(tmp_path, "sun", "val", "MAP_2_point3", "000007", raw)
    return tmp_path


def test_label_shift_and_class_ids_match_deliver():
    ids = deliver_labels(np.array([0, 1, 7, 10, 25, 255, 26]))
    assert ids.tolist() == [255, 0, 6, 9, 24, 255, 255]
    assert DELIVER_CLASSES[ids[1]] == "Building" and DELIVER_CLASSES[ids[2]] == "Road"
    assert DELIVER_CLASSES[ids[3]] == "Cars" and DELIVER_CLASSES[ids[4]] == "Truck"
    assert CLASS_ID["RoadLine"] == 5 and CLASS_ID["Sky"] == 12 and len(DELIVER_CLASSES) == 25


def test_loader_reads_the_deliver_tree(tree):
    ds = DeliverDataset(tree, "train", size=(H, W))
    assert len(ds) == 2
    s = ds.samples[0]
    assert (s.condition, s.split, s.sequence, s.case) == ("cloud", "train", "MAP_1_point20", None)
    assert s.path("depth") == tree / "hha/cloud/train/MAP_1_point20/000100_depth_front.png"
    assert s.path("semantic") == tree / "semantic/cloud/train/MAP_1_point20/000100_semantic_front.png"
    inputs, label = ds[0]
    assert set(inputs) == {"rgb", "depth", "event", "lidar"}
    assert all(v.shape == (3, H, W) and v.dtype == torch.float32 for v in inputs.values())
    assert label.dtype == torch.int64 and label.shape == (H, W)
    assert label[0, :5].tolist() == [255, 0, 6, 24, 255] and label[1, 0] == 255, "channel 0, DELIVER shift"
    expected_red = (np.array([1.0, 0.0, 0.0], np.float32) - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(inputs["rgb"][:, 5, 5].numpy(), expected_red, rtol=1e-6)
    np.testing.assert_allclose(inputs["depth"][:, 5, 5].numpy(), [10 / 255, 20 / 255, 30 / 255], rtol=1e-6)
    np.testing.assert_allclose(inputs["lidar"][:, 3, 4].numpy(), [200 / 255, 100 / 255, 50 / 255], rtol=1e-6)
    assert inputs["lidar"].sum() == pytest.approx(350 / 255), "one return, nothing invented"


def test_low_resolution_events_are_resized_nearest(tree):
    ds = DeliverDataset(tree, "train", modalities=["event"], size=(H, W), cases=["motionblur"])
    assert len(ds) == 1 and ds.samples[0].case == "motionblur"
    images, _ = ds.load_raw(0)
    small = (np.arange((H // 4) * (W // 4)).reshape(H // 4, W // 4) % 251).astype(np.uint8)
    np.testing.assert_array_equal(images["event"][..., 0], np.repeat(np.repeat(small, 4, 0), 4, 1))


def test_events_smaller_than_rgb_are_upsampled_floor_nearest_as_the_reference(tmp_path):
    raw = np.ones((H, W), np.uint8)
    _frame(tmp_path, "fog", "val", "MAP_4_point1_eventlowres", "000001", raw, event_hw=(12, 12))
    images, _ = DeliverDataset(tmp_path, "val", modalities=["event"], size=(H, W)).load_raw(0)
    small = (np.arange(12 * 12).reshape(12, 12) % 251).astype(np.uint8)
    # 12 -> 16: source index floor(i * 12 / 16), by hand: each 4 outputs read 3k, 3k, 3k + 1, 3k + 2
    index = [0, 0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 8, 9, 9, 10, 11]
    np.testing.assert_array_equal(images["event"][..., 0], small[index][:, index])


def test_floor_nearest_is_torch_nearest_not_nearest_exact():
    row = np.arange(48, dtype=np.uint8)[None, :, None]
    out = floor_nearest(row, (1, 64))[0, :, 0]
    assert out[:8].tolist() == [0, 0, 1, 2, 3, 3, 4, 5]                    # 48 -> 64 by hand
    for size in ((48, 64), (261, 1042), (7, 10), (1042, 1042)):
        x = torch.arange(size[0] * size[0]).reshape(1, 1, size[0], size[0]).float()
        image = x[0, 0].numpy()
        ours = floor_nearest(image, (size[1], size[1]))
        torch_nearest = torch.nn.functional.interpolate(x, size=(size[1], size[1]), mode="nearest")[0, 0].numpy()
        np.testing.assert_array_equal(ours, torch_nearest)
    exact = cv2.resize(row, (64, 1), interpolation=cv2.INTER_NEAREST_EXACT).ravel()
    assert exact[:8].tolist() == [0, 1, 1, 2, 3, 4, 4, 5]                  # what the loader used to do


@pytest.mark.parametrize("hw,short,scaled,aligned", [
    ((1042, 1042), 1024, (1024, 1024), (1024, 1024)),   # DELIVER at the recipes' size: one resize
    ((1042, 1042), 500, (500, 500), (512, 512)),        # short side, then up to a multiple of 32
    ((1080, 1920), 1024, (1024, 1820), (1024, 1824)),   # 1920 * 1024 / 1080 = 1820.44
    ((100, 194), 25, (25, 48), (32, 64)),               # 48.5 rounds half to even (Python's round), to 48
])
def test_deliver_eval_sizes(hw, short, scaled, aligned):
    assert deliver_eval_shape(*hw, short) == (scaled, aligned)


def test_deliver_eval_resize_antialiases_images_and_takes_labels_nearest_twice():
    img = np.zeros((128, 128, 3), np.uint8)
    img[0, 0] = 255
    out, _ = deliver_eval_resize({"rgb": img, "lidar": img}, np.zeros((128, 128), np.uint8), 32)
    # 4x down, triangle filter of support 4 around input x = 2: weights .625 .875 .875 .625 .375 .125
    # over pixels 0..5, so pixel 0 keeps .625 / 3.5 per axis: 255 * (.625 / 3.5) ** 2 = 8.1
    assert out["rgb"].shape == (32, 32, 3) and out["rgb"][0, 0].tolist() == [8, 8, 8]
    np.testing.assert_array_equal(out["lidar"], out["rgb"])                # every modality, as the reference
    labels = np.tile(np.arange(30, dtype=np.uint8), (20, 1))
    images = {"rgb": np.zeros((20, 30, 3), np.uint8)}
    out, lab = deliver_eval_resize(images, labels, 32)                    # 20x30 -> 32x48 -> 32x64
    assert lab.shape == (32, 64) and out["rgb"].shape == (32, 64, 3)
    # column k reads floor(floor(k * 48 / 64) * 30 / 48), by hand for k = 0..7
    assert lab[0, :8].tolist() == [0, 0, 0, 1, 1, 1, 2, 3]


def test_dataset_eval_resize_option(tree):
    inputs, label = DeliverDataset(tree, "val", size=(40, 40), eval_resize="deliver")[0]
    assert label.shape == (64, 64) and all(v.shape == (3, 64, 64) for v in inputs.values())  # 16 -> 40 -> 64
    assert DeliverDataset(tree, "val", size=(40, 40))[0][1].shape == (40, 40)
    with pytest.raises(ValueError, match="eval_resize"):
        DeliverDataset(tree, "val", eval_resize="bicubic")


@pytest.mark.parametrize("recipe,resize", [("deliver_b0", "deliver"), ("deliver_b2", "deliver"),
                                           ("synthetic_tiny", "exact"), ("synthetic_b0", "exact")])
def test_deliver_recipes_validate_with_the_reference_resize(recipe, resize):
    from charm_core.train.config import load_config
    from support import ROOT

    assert load_config(ROOT / "training" / f"{recipe}.yaml").eval_resize == resize


def test_condition_and_case_selection(tree):
    assert [s.condition for s in find_samples(tree, "train")] == ["cloud", "night"]
    assert len(find_samples(tree, "train", conditions=["night"])) == 1
    assert [s.case for s in find_samples(tree, "train", cases=[None])] == [None]
    assert len(find_samples(tree, "val")) == 1 and find_samples(tree, "test") == []
    with pytest.raises(ValueError, match="no DELIVER samples"):
        DeliverDataset(tree, "test")
    with pytest.raises(ValueError, match="unknown conditions"):
        find_samples(tree, "train", conditions=["snow"])
    with pytest.raises(ValueError, match="split"):
        find_samples(tree, "training")
    with pytest.raises(ValueError, match="unknown modalities"):
        DeliverDataset(tree, "train", modalities=["sonar"])


def test_missing_modality_file_is_a_clear_error(tree):
    (tree / "lidar/cloud/train/MAP_1_point20/000100_lidar_front.png").unlink()
    ds = DeliverDataset(tree, "train", modalities=["rgb", "lidar"], conditions=["cloud"])
    with pytest.raises(FileNotFoundError, match="000100_lidar_front"):
        ds[0]
    assert set(DeliverDataset(tree, "train", modalities=["rgb"], conditions=["cloud"])[0][0]) == {"rgb"}


def _coordinate_sample(h=48, w=64):
    """Every modality and the label encode the column index, so any misalignment is visible."""
    col = np.tile(np.arange(w, dtype=np.uint8), (h, 1))
    img = np.dstack([col, col, col])
    images = {"rgb": img.copy(), "depth": img.copy(), "lidar": img.copy(), "event": img.copy()}
    return images, (col % 25).astype(np.uint8)


def test_augment_moves_all_modalities_and_labels_together():
    # no rescaling (the short side already fits): crop and flip must keep every pixel aligned
    config = AugmentConfig(jitter_p=0.0, blur_p=0.0, scale=(1.0, 1.0))
    flips = set()
    for seed in range(8):
        images, labels = _coordinate_sample()
        out, lab = augment(images, labels, (48, 32), np.random.default_rng(seed), config)
        assert lab.shape == (48, 32) and all(v.shape == (48, 32, 3) for v in out.values())
        for m in ("depth", "lidar", "event"):
            np.testing.assert_array_equal(out[m], out["rgb"])
        np.testing.assert_array_equal(out["rgb"][..., 0].astype(int) % 25, lab)
        flips.add(bool(out["rgb"][0, 0, 0] > out["rgb"][0, 1, 0]))
    assert flips == {True, False}, "both flipped and unflipped crops occur"
    # with rescaling, dense images interpolate and sparse rasters and labels take the nearest pixel,
    # all through the same crop window
    for seed in range(8):
        images, labels = _coordinate_sample()
        out, lab = augment(images, labels, (32, 32), np.random.default_rng(seed), AugmentConfig(scale=(0.6, 1.8)))
        np.testing.assert_array_equal(out["lidar"], out["event"])
        ok = lab != 255
        assert np.all(out["lidar"][..., 0][ok].astype(int) % 25 == lab[ok])
        assert np.abs(out["depth"].astype(int) - out["lidar"].astype(int)).max() <= 2


def test_augment_photometric_steps_touch_rgb_only():
    config = AugmentConfig(jitter_p=1.0, blur_p=1.0, flip_p=0.0, scale=(1.0, 1.0))
    images, labels = _coordinate_sample()
    images = {k: v.copy() for k, v in images.items()}
    images["rgb"][::2] = 200
    out, _ = augment(images, labels, (48, 64), np.random.default_rng(0), config)
    for m in ("depth", "lidar", "event"):
        np.testing.assert_array_equal(out[m], images[m])
    assert not np.array_equal(out["rgb"], images["rgb"])


def test_augment_pads_with_zero_and_ignore():
    images, labels = _coordinate_sample(16, 16)
    out, lab = augment(images, labels, (32, 32), np.random.default_rng(1), AugmentConfig(scale=(0.5, 0.5)))
    assert np.all(lab[16:] == 255) and np.all(lab[:, 16:] == 255)
    assert np.all(out["depth"][16:] == 0)


def test_training_samples_are_reproducible_per_epoch(tree):
    ds = DeliverDataset(tree, "train", size=(12, 12), augment=True, seed=3,
                        augment_config=AugmentConfig(jitter_p=1.0, scale=(0.7, 1.5)))
    a, la = ds[0]
    b, lb = ds[0]
    assert torch.equal(la, lb) and all(torch.equal(a[k], b[k]) for k in a)
    changed = False
    for epoch in range(1, 6):
        ds.set_epoch(epoch)
        c, lc = ds[0]
        changed |= not torch.equal(a["rgb"], c["rgb"]) or not torch.equal(la, lc)
    assert changed


def test_synthetic_output_loads_unchanged(tmp_path):
    write_dataset(tmp_path, {"train": 3, "val": 2}, (64, 64), seed=5, workers=1, progress=False)
    ds = DeliverDataset(tmp_path, "train", size=(64, 64))
    assert len(ds) == 3
    _, labels = ds.load_raw(1)
    stored = cv2.imread(str(ds.samples[1].path("semantic")), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(labels, stored.astype(int) - 1 + 256 * (stored == 0))
    inputs, label = ds[1]
    assert set(inputs) == {"rgb", "depth", "event", "lidar"} and label.shape == (64, 64)
    assert label.max() < len(DELIVER_CLASSES), "every synthetic pixel is labelled"
    rgb = cv2.cvtColor(cv2.imread(str(ds.samples[1].path("rgb"))), cv2.COLOR_BGR2RGB)
    np.testing.assert_allclose(inputs["rgb"].numpy(), ((rgb / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1),
                               atol=1e-5)
    assert len(DeliverDataset(tmp_path, "val")) == 2
