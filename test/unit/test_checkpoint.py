"""Checkpoints: exact round trip, metadata, clear errors for corrupted or mismatched files, no pickle."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from charm_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, tensor_digest
from charm_core.classes import DELIVER_CLASSES, DELIVER_PALETTE
from charm_core.modalities import MODALITIES
from charm_core.model import ModelConfig, build_model


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _trained_like(cfg: ModelConfig) -> torch.nn.Module:
    """A model whose weights and BN statistics differ from a fresh init, so loading must copy them."""
    torch.manual_seed(1)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.decoder.bn.running_mean.normal_()
    model.decoder.bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _save(tmp_path: Path, cfg: ModelConfig = ModelConfig()) -> tuple[Path, torch.nn.Module]:
    model = _trained_like(cfg)
    path = save_checkpoint(tmp_path / "model.safetensors", model, cfg,
                           provenance={"recipe": "synthetic", "steps": 1200, "seed": 7, "input_size": [256, 320],
                                       "metrics": {"miou": 0.41}})
    return path, model


@pytest.mark.parametrize("cfg", [ModelConfig(), ModelConfig(arch="align", modalities=("rgb", "lidar"), mpu_blocks=1,
                                                            symmetric_mpu=True, num_classes=25, decoder_dim=32)])
def test_round_trip_gives_identical_outputs_and_metadata(tmp_path: Path, cfg: ModelConfig) -> None:
    path, model = _save(tmp_path, cfg)
    loaded, info = load_checkpoint(path)
    assert not loaded.training
    x = {m: torch.randn(2, 3, 48, 64) for m in cfg.modalities}
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x))
    assert info.config == cfg and info.modalities == cfg.modalities and info.path == path
    assert info.class_names == DELIVER_CLASSES
    assert info.palette.dtype == np.uint8 and np.array_equal(info.palette, DELIVER_PALETTE)
    assert info.provenance == {"recipe": "synthetic", "steps": 1200, "seed": 7, "input_size": [256, 320],
                               "metrics": {"miou": 0.41}}
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp file left behind


def test_custom_classes_and_palette(tmp_path: Path) -> None:
    cfg = ModelConfig(num_classes=3)
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], dtype=np.uint8)
    save_checkpoint(tmp_path / "c.safetensors", build_model(cfg), cfg, class_names=["a", "b", "c"], palette=palette)
    _, info = load_checkpoint(tmp_path / "c.safetensors")
    assert info.class_names == ("a", "b", "c") and np.array_equal(info.palette, palette)


def test_save_validates_its_arguments(tmp_path: Path) -> None:
    cfg = ModelConfig()
    model = build_model(cfg)
    with pytest.raises(ValueError, match="3 class names for a model with 25 classes"):
        save_checkpoint(tmp_path / "x.safetensors", model, cfg, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="palette"):
        save_checkpoint(tmp_path / "x.safetensors", model, cfg, palette=DELIVER_PALETTE[:5])
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tmp_path / "x.safetensors", model, cfg, provenance={"when": object()})
    with pytest.raises(ValueError, match="differs from the model"):
        save_checkpoint(tmp_path / "x.safetensors", model, ModelConfig(arch="mean"))
    assert not list(tmp_path.iterdir())


def test_truncated_file_is_rejected_with_its_name(tmp_path: Path) -> None:
    path, _ = _save(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors file"):
        load_checkpoint(path)


def test_flipped_byte_in_the_weights_is_detected(tmp_path: Path) -> None:
    path, _ = _save(tmp_path)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # inside the last tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256.*corrupted"):
        load_checkpoint(path)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"this is not a model" * 10)
    with pytest.raises(CheckpointError, match="garbage.safetensors: not a readable safetensors file"):
        load_checkpoint(garbage)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match=r"metadata lacks \['format', 'config'"):
        load_checkpoint(plain)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.safetensors")


def _rewrite(path: Path, tensors: dict[str, torch.Tensor] | None = None, **meta_changes: str) -> None:
    """Write a checkpoint with edited tensors/metadata but a valid digest (a consistent, mismatched file)."""
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(path)) if tensors is None else tensors
    meta |= meta_changes
    meta["sha256"] = tensor_digest(tensors)
    save_file(tensors, str(path), metadata=meta)


def test_config_that_does_not_fit_the_weights_names_both_shapes(tmp_path: Path) -> None:
    path, _ = _save(tmp_path)
    cfg = ModelConfig(num_classes=19).to_dict()
    _rewrite(path, config=json.dumps(cfg), class_names=json.dumps(list(DELIVER_CLASSES[:19])),
             palette=json.dumps(DELIVER_PALETTE[:19].tolist()))
    with pytest.raises(CheckpointError, match=r"linear_pred.weight: file \(25, 64, 1, 1\) vs model \(19, 64, 1, 1\)"):
        load_checkpoint(path)


def test_missing_and_unexpected_tensors_are_listed(tmp_path: Path) -> None:
    path, _ = _save(tmp_path)
    tensors = load_file(str(path))
    del tensors["decoder.bn.running_mean"]
    tensors["decoder.extra"] = torch.zeros(1)
    _rewrite(path, tensors)
    listed = r"1 missing \['decoder.bn.running_mean'\], 1 unexpected \['decoder.extra'\]"
    with pytest.raises(CheckpointError, match=listed):
        load_checkpoint(path)


def test_unknown_config_key_and_foreign_modality_order(tmp_path: Path) -> None:
    path, _ = _save(tmp_path)
    _rewrite(path, config=json.dumps(ModelConfig().to_dict() | {"heads": 4}))
    with pytest.raises(CheckpointError, match="unknown ModelConfig keys"):
        load_checkpoint(path)
    path, _ = _save(tmp_path)
    _rewrite(path, modality_order=json.dumps(list(reversed(MODALITIES))))
    with pytest.raises(CheckpointError, match="availability order"):
        load_checkpoint(path)


def test_loading_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = _save(tmp_path)

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    model, info = load_checkpoint(path)
    assert info.config == ModelConfig()
