"""Model checkpoints as safetensors: tensors plus JSON metadata, loaded without unpickling anything.

Metadata (safetensors allows str -> str only, so values are JSON strings): the ModelConfig (with the
spec of every modality), class names, palette, the model's modalities, the modality order of
availability masks (the model's own list; files written when that order was DELIVER's four for
every model say so and still load), the training provenance and a SHA-256 of the tensor bytes, so a
flipped bit in the data is caught, not run.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from charm_core.classes import DELIVER_CLASSES, DELIVER_PALETTE
from charm_core.modalities import DELIVER_MODALITIES, ModalitySpec
from charm_core.model import ModelConfig, build_model
from charm_core.model.segmentor import Segmentor

FORMAT = "charm_ros.checkpoint/1"
_REQUIRED = ("format", "config", "class_names", "palette", "modalities", "modality_order", "provenance",
             "sha256")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    config: ModelConfig
    class_names: tuple[str, ...]
    palette: np.ndarray  # uint8 [num_classes, 3]
    modalities: tuple[str, ...]  # what the model accepts, in its order (authoritative)
    provenance: dict[str, Any] = field(default_factory=dict)  # recipe, steps, seed, input_size, metrics...


def save_checkpoint(path: str | Path, model: nn.Module, config: ModelConfig, *,
                    class_names: tuple[str, ...] | list[str] = DELIVER_CLASSES,
                    palette: np.ndarray = DELIVER_PALETTE,
                    provenance: dict[str, Any] | None = None) -> Path:
    """Write `model`'s weights and metadata atomically (temp file + rename); returns the path."""
    path = Path(path)
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    if isinstance(model, Segmentor) and model.cfg != config:
        raise ValueError(f"config {config} differs from the model's own config {model.cfg}")
    class_names = tuple(class_names)
    palette = np.asarray(palette)
    if len(class_names) != config.num_classes:
        raise ValueError(f"{len(class_names)} class names for a model with {config.num_classes} classes")
    if palette.shape != (config.num_classes, 3) or palette.min() < 0 or palette.max() > 255:
        raise ValueError(f"palette must be [{config.num_classes}, 3] values in 0..255, got shape {palette.shape}")
    try:
        provenance_json = json.dumps(provenance or {}, sort_keys=True)
    except TypeError as exc:
        raise ValueError(f"provenance must be JSON-serialisable: {exc}") from exc
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "class_names": json.dumps(list(class_names)),
        "palette": json.dumps(palette.astype(int).tolist()),
        "modalities": json.dumps(list(config.modalities)),
        "modality_order": json.dumps(list(config.modalities)),
        "provenance": provenance_json,
        "sha256": tensor_digest(tensors),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Segmentor, CheckpointInfo]:
    """Rebuild the model from the stored config, load and verify its weights; model in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    tensors, meta = read_safetensors(path)
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: metadata lacks {missing}; not a charm_ros checkpoint ({FORMAT})")
    if meta["format"] != FORMAT:
        raise CheckpointError(f"{path}: format {meta['format']!r}, this code reads {FORMAT!r}")
    if tensor_digest(tensors) != meta["sha256"]:
        raise CheckpointError(f"{path}: tensor data does not match its SHA-256; the file is corrupted")
    try:
        parsed = {k: json.loads(meta[k]) for k in _REQUIRED if k not in ("format", "sha256")}
        config = ModelConfig.from_dict(parsed["config"])
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable metadata: {exc}") from exc
    order = tuple(parsed["modality_order"])
    legacy = order == DELIVER_MODALITIES and config.modalities == tuple(m for m in order if m in config.modalities)
    if order != config.modalities and not legacy:
        raise CheckpointError(f"{path}: availability order {list(order)} differs from the model's "
                              f"modalities {list(config.modalities)}")
    class_names = tuple(parsed["class_names"])
    palette = np.asarray(parsed["palette"])
    if len(class_names) != config.num_classes or palette.shape != (config.num_classes, 3):
        raise CheckpointError(f"{path}: {len(class_names)} class names / palette {palette.shape} for "
                              f"{config.num_classes} classes")
    model = build_model(config)
    check_state_dict(model, tensors, path)
    model.load_state_dict(tensors)
    model.eval().to(map_location)
    info = CheckpointInfo(path, config, class_names, palette.astype(np.uint8), config.modalities,
                          parsed["provenance"])
    return model, info


def read_modality_specs(path: str | Path) -> tuple[ModalitySpec, ...]:
    """The model's modalities (specs, in its order) from the file's metadata alone: no tensor is read,
    so a node can declare one parameter section per sensor before it loads the model."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
        return ModelConfig.from_dict(json.loads(meta["config"])).specs
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupted?): {exc}") from exc
    except (KeyError, json.JSONDecodeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: no usable model config in its metadata ({FORMAT}): {exc}") from exc


def read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; CheckpointError for anything else."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupted?): {exc}") from exc
    return tensors, meta


def check_state_dict(model: nn.Module, tensors: dict[str, Tensor], path: Path) -> None:
    """CheckpointError listing missing, unexpected and mis-shaped tensors (with both shapes)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    shapes = [f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(own) if k in tensors and tensors[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{path}: weights do not fit the model its config describes: {len(missing)} missing "
            f"{missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}, {len(shapes)} shape "
            f"mismatches {shapes[:5]}")


def tensor_digest(tensors: dict[str, Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of the tensors, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def init_from_checkpoint(model: Segmentor, path: str | Path) -> dict[str, list[str]]:
    """Start `model` from another checkpoint's weights where they fit: every tensor of the same name
    and shape, and the rows of per-modality tensors (RE scores, MPU modality embeddings) of the
    modalities both models have, matched by name. What the source lacks (a new modality's projectors
    and rows, a classifier of another size) keeps its fresh initialisation.

    Returns {"loaded", "rows", "fresh", "unused"}: target keys copied whole, target keys copied row by
    row, target keys left as initialised, source keys not used."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    tensors, meta = read_safetensors(path)
    if meta.get("format") != FORMAT or tensor_digest(tensors) != meta.get("sha256"):
        raise CheckpointError(f"{path}: not an intact {FORMAT} checkpoint")
    source = ModelConfig.from_dict(json.loads(meta["config"])).modalities
    target = model.cfg.modalities
    rows = model.per_modality_rows()
    state = model.state_dict()  # its tensors alias the model's: copying into them loads the weights
    report: dict[str, list[str]] = {"loaded": [], "rows": [], "fresh": [], "unused": sorted(set(tensors) - set(state))}
    with torch.no_grad():
        for key, own in state.items():
            src = tensors.get(key)
            if src is not None and key in rows and src.shape[1:] == own.shape[1:] and len(src) == len(source):
                shared = [m for m in target if m in source]
                for m in shared:
                    own[target.index(m)] = src[source.index(m)]
                report["rows"].append(key)
            elif src is not None and src.shape == own.shape:
                own.copy_(src)
                report["loaded"].append(key)
            else:
                report["fresh"].append(key)
                if src is not None:
                    report["unused"].append(key)
    return report
