"""Resumable training state in safetensors (no pickle): optimizer moments and counters.

Tensors go in as tensors; everything else (param-group settings, step, sampler statistics) as JSON
in the metadata, so a resumed run continues bit-for-bit where the saved one stopped. No RNG state is
kept: the trainer draws each step's randomness from (seed, step, rank) (distributed.step_seed).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

_OPTIM = "optim.state."


def save_training_state(path: str | Path, optimizer: torch.optim.Optimizer, extra: dict[str, Any]) -> None:
    """Write optimizer state and JSON-able `extra` atomically."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, slots in state["state"].items():
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{_OPTIM}{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    metadata = {"param_groups": json.dumps(state["param_groups"]), "optim_scalars": json.dumps(scalars),
                "extra": json.dumps(extra)}
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)


def load_training_state(path: str | Path, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore what save_training_state wrote; returns `extra`."""
    path = Path(path)
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if "param_groups" not in metadata:
        raise ValueError(f"{path}: not a training state file (no param_groups metadata)")
    groups = json.loads(metadata["param_groups"])
    scalars = json.loads(metadata.get("optim_scalars", "{}"))
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(_OPTIM):
            index, slot = key[len(_OPTIM):].split(".", 1)
            state.setdefault(int(index), {})[slot] = value
    for index, slots in scalars.items():
        state.setdefault(int(index), {}).update(slots)
    current = optimizer.state_dict()["param_groups"]
    if len(groups) != len(current) or any(len(a["params"]) != len(b["params"]) for a, b in zip(groups, current)):
        raise ValueError(f"{path}: optimizer parameter groups do not match this model")
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return json.loads(metadata["extra"])
