"""Loaders for MCubeS, MUSES, MFNet and DELIVER-layout intensity modalities, on small hand-made trees
with the real datasets' naming; expected values computed by hand from the reference loaders' rules."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from charm_core.checkpoint import load_checkpoint
from charm_core.data.datasets import build_dataset
from charm_core.data.deliver import DeliverDataset
from charm_core.data.mcubes import MCubeSDataset
from charm_core.data.mfnet import MFNetDataset
from charm_core.data.muses import MusesDataset
from charm_core.encoders import IMAGENET_MEAN, IMAGENET_STD
from charm_core.train.cli import train_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _write(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), img)


def _npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr)


def _imagenet(rgb01) -> np.ndarray:
    return (np.asarray(rgb01, np.float32) - IMAGENET_MEAN) / IMAGENET_STD


# ---------------------------------------------------------------------------------------------- MCubeS
MH, MW = 3, 196   # 192 columns are cut off: 4 remain


@pytest.fixture()
def mcubes(tmp_path: Path) -> Path:
    root = tmp_path / "multimodal_dataset"
    (root / "list_folder").mkdir(parents=True)
    (root / "list_folder" / "train.txt").write_text("outscene1 extra\n\noutscene2\n")
    (root / "list_folder" / "test.txt").write_text("outscene3\n")
    for k, name in enumerate(["outscene1", "outscene2", "outscene3"]):
        rgb = np.zeros((MH, MW, 3), np.uint16 if k == 0 else np.uint8)
        rgb[:, :192] = 7                                  # the cut-off strip
        rgb[:, 192:] = (65535, 0, 13107) if k == 0 else (255, 0, 51)
        _write(root / "polL_color" / f"{name}.png", rgb)
        sin = np.full((MH, MW), 0.5, np.float32)
        sin[:, 192:] = [[-1.0, 0.0, 0.6, 1.0]]
        _npy(root / "polL_aolp_sin" / f"{name}.npy", sin)
        _npy(root / "polL_aolp_cos" / f"{name}.npy", np.full((MH, MW), 0.8, np.float32))
        dolp = np.zeros((MH, MW), np.float32)
        dolp[:, 192:] = [[0.0, 0.25, 0.5, 1.0]]
        _npy(root / "polL_dolp" / f"{name}.npy", dolp)
        nir = np.zeros((MH, MW), np.uint16 if k == 0 else np.uint8)
        nir[:, 192:] = 65535 if k == 0 else 51
        _write(root / "NIR_warped" / f"{name}.png", nir)
        gt = np.full((MH, MW), 3, np.uint8)
        gt[:, 192:] = [[0, 19, 20, 255]]
        _write(root / "GT" / f"{name}.png", gt)
    return root


def test_mcubes_lists_crop_channels_and_labels(mcubes: Path) -> None:
    ds = MCubeSDataset(mcubes, "train", size=(MH, 4))
    assert [s.name for s in ds.samples] == ["outscene1", "outscene2"], "first token per line, blank lines skipped"
    assert [s.name for s in MCubeSDataset(mcubes, "val", size=(MH, 4)).samples] == ["outscene3"], "val = test.txt"
    assert ds.modalities == ("rgb", "aolp", "dolp", "nir")
    images, labels = ds.load_raw(0)
    assert labels.shape == (MH, 4) and labels[0].tolist() == [0, 19, 255, 255], "192 columns off; > 19 ignored"
    assert images["rgb"].dtype == np.float32 and np.allclose(images["rgb"][0, 0], [1.0, 0.0, 0.2]), "16-bit /65535"
    inputs, target = ds[1]                                # 8-bit frame, full pipeline
    assert all(v.shape == (3, MH, 4) for v in inputs.values()) and target[0].tolist() == [0, 19, 255, 255]
    np.testing.assert_allclose(inputs["rgb"][:, 0, 0], _imagenet([1.0, 0.0, 0.2]), rtol=1e-5)
    np.testing.assert_allclose(inputs["aolp"][:, 0, :].T, [[0.0, 0.9, 0.0], [0.5, 0.9, 0.5], [0.8, 0.9, 0.8],
                                                           [1.0, 0.9, 1.0]], atol=1e-6)   # [sin, cos, sin] -> [0, 1]
    np.testing.assert_allclose(inputs["dolp"][:, 0, :], [[0.0, 0.25, 0.5, 1.0]] * 3, atol=1e-6)
    np.testing.assert_allclose(inputs["nir"][:, 0, 0], [0.2] * 3, atol=1e-6)
    assert np.allclose(ds.load_raw(0)[0]["nir"], 1.0), "16-bit NIR /65535"
    with pytest.raises(ValueError, match="MCubeS has no"):
        MCubeSDataset(mcubes, "train", ["thermal"])
    with pytest.raises(FileNotFoundError, match="list"):
        MCubeSDataset(mcubes.parent, "train")


# ---------------------------------------------------------------------------------------------- MUSES
def _muses_frame(root: Path, split: str, weather: str, time: str, name: str, label_row: list[int]) -> None:
    where = f"{split}/{weather}/{time}"
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 1] = 255
    _write(root / "frame_camera" / where / f"{name}_frame_camera.png", rgb)
    event = np.zeros((2, 2, 3), np.uint8)                 # half resolution: brought to the label size
    event[0, 1] = (255, 0, 51)
    _write(root / "event_camera" / where / f"{name}_event_camera.png", event)
    _write(root / "lidar" / where / f"{name}_lidar.png", np.full((4, 4), 102, np.uint8))
    gt = np.zeros((4, 4), np.uint8)
    gt[0] = label_row
    _write(root / "gt_semantic" / where / f"{name}_gt_labelTrainIds.png", gt)


def test_muses_discovery_paths_conditions_and_labels(tmp_path: Path) -> None:
    _muses_frame(tmp_path, "train", "fog", "night", "REC0001_frame_000010", [0, 18, 19, 255])
    _muses_frame(tmp_path, "train", "clear", "day", "REC0002_frame_000020", [1, 2, 3, 4])
    _muses_frame(tmp_path, "train", "dusk", "day", "REC0003_frame_000030", [1, 2, 3, 4])   # not a MUSES weather
    ds = MusesDataset(tmp_path, "train", size=(4, 4))
    assert [s.condition for s in ds.samples] == ["clear_day", "fog_night"], "sorted; other weathers skipped"
    assert ds.samples[1].path("event_camera") == Path(
        "event_camera/train/fog/night/REC0001_frame_000010_event_camera.png")
    assert ds.samples[1].labels == Path("gt_semantic/train/fog/night/REC0001_frame_000010_gt_labelTrainIds.png")
    inputs, labels = ds[1]
    assert labels[0].tolist() == [0, 18, 255, 255], "255 stays ignore (the reference makes it road)"
    np.testing.assert_allclose(inputs["rgb"][:, 2, 2], _imagenet([0.0, 1.0, 0.0]), rtol=1e-5)
    ev = inputs["event"]
    assert torch.equal(ev[:, 0:2, 2:4], torch.tensor([1.0, 0.0, 0.2]).view(3, 1, 1).expand(3, 2, 2)), "nearest x2"
    assert ev[:, 2:, :].abs().sum() == 0 and np.allclose(inputs["lidar"], 0.4)
    assert len(MusesDataset(tmp_path, "train", weather="fog")) == 1
    assert len(MusesDataset(tmp_path, "train", time="day")) == 1
    radar = MusesDataset(tmp_path, "train", ["rgb", {"name": "radar", "kind": "lidar"}], size=(4, 4))
    (tmp_path / "radar/train/clear/day").mkdir(parents=True)
    _write(tmp_path / "radar/train/clear/day/REC0002_frame_000020_radar.png", np.full((4, 4), 255, np.uint8))
    assert np.allclose(radar[0][0]["radar"], 1.0), "a configured modality reads its own folder"
    with pytest.raises(ValueError, match="no MUSES frames"):
        MusesDataset(tmp_path, "val")


# ---------------------------------------------------------------------------------------------- MFNet
def test_mfnet_lists_thermal_and_labels(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("00001D\n00002N\n")
    (tmp_path / "test.txt").write_text("00003D\n")
    for name in ("00001D", "00002N", "00003D"):
        rgb = np.zeros((4, 6, 3), np.uint8)
        rgb[..., 0] = 255
        _write(tmp_path / "rgb" / f"{name}.jpg", rgb)
        _write(tmp_path / "ther" / f"{name}.jpg", np.full((4, 6), 102, np.uint8))
        lab = np.zeros((4, 6), np.uint8)
        lab[0, :4] = [0, 8, 9, 255]
        _write(tmp_path / "labels" / f"{name}.png", lab)
    ds = MFNetDataset(tmp_path, "train", size=(4, 6))
    assert [(s.name, s.condition) for s in ds.samples] == [("00001D", "day"), ("00002N", "night")]
    assert len(MFNetDataset(tmp_path, "val", size=(4, 6))) == 1, "val reads test.txt"
    inputs, labels = ds[0]
    assert labels[0, :4].tolist() == [0, 8, 255, 255], "0 (unlabeled) is a class; > 8 ignored"
    np.testing.assert_allclose(inputs["thermal"], np.full((3, 4, 6), 0.4), atol=2 / 255), "8-bit thermal /255"
    np.testing.assert_allclose(inputs["rgb"][:, 1, 1], _imagenet([1.0, 0.0, 0.0]), atol=0.05)
    assert ds.spec["thermal"].range == (0.0, 1.0) and ds.spec["thermal"].scale is None, "MFNet's own thermal"
    assert len(ds.CLASSES) == 9 and ds.PALETTE.shape == (9, 3)
    with pytest.raises(ValueError, match="MFNet provides"):
        MFNetDataset(tmp_path, "train", ["rgb", "depth"])
    out = tmp_path / "run"
    assert train_main(["dataset=mfnet", f"data_root={tmp_path}", f"out_dir={out}", "modalities=[rgb, thermal]",
                       "steps=1", "warmup_steps=0", "batch_size=2", "size=[32, 32]", "workers=0",
                       "eval_every=1", "log_every=1", "model.backbone=tiny", "--no-resume"]) == 0
    model, info = load_checkpoint(out / "best.safetensors")
    assert info.class_names[0] == "unlabeled" and info.config.num_classes == 9
    assert info.config.modality_specs["thermal"] == {"kind": "intensity", "range": [0.0, 1.0]}


# ------------------------------------------------------------------------------- DELIVER layout, thermal
def test_deliver_layout_reads_centikelvin_thermal_and_configured_folders(tmp_path: Path) -> None:
    where = "cloud/train/MAP_1_point20"
    _write(tmp_path / f"img/{where}/000001_rgb_front.png", np.zeros((4, 4, 3), np.uint8))
    _write(tmp_path / f"semantic/{where}/000001_semantic_front.png", np.full((4, 4, 3), 7, np.uint8))
    thermal = np.full((2, 2), 29000, np.uint16)            # 290 K, a camera of half the resolution
    _write(tmp_path / f"thermal/{where}/000001_thermal_front.png", thermal)
    _write(tmp_path / f"swir/{where}/000001_swir_front.png", np.full((4, 4), 51, np.uint8))
    ds = DeliverDataset(tmp_path, "train", ["rgb", "thermal", {"name": "swir", "kind": "intensity",
                                                                "range": [0.0, 0.4]}], size=(4, 4))
    assert ds.samples[0].path("thermal") == tmp_path / f"thermal/{where}/000001_thermal_front.png"
    inputs, labels = ds[0]
    np.testing.assert_allclose(inputs["thermal"], 0.5, atol=1e-6)   # (290 - 250) / 80
    np.testing.assert_allclose(inputs["swir"], 0.5, atol=1e-6)      # 51/255 = 0.2 of a 0..0.4 range
    assert (labels == 6).all()
    tree = build_dataset("deliver", tmp_path, "train", ["thermal"], (4, 4))
    assert set(tree[0][0]) == {"thermal"}
