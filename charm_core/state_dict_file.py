"""Read a tensor state dict from .safetensors or .pth without executing code from the file."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

# Wrappers that training frameworks put around a state dict ({"state_dict": {...}}).
_WRAPPER_KEYS = ("state_dict", "model")


def load_state_dict_file(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Tensors of a .safetensors file, or of a .pth/.pt file via torch.load(weights_only=True).

    A {"state_dict": ...} or {"model": ...} wrapper (mmcv, timm exports) is unwrapped. Raises ValueError when the
    file cannot be read safely or does not hold a flat name -> tensor mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path), device=str(map_location))
        except (SafetensorError, OSError) as exc:
            raise ValueError(f"{path}: not a readable safetensors file ({exc})") from exc
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise ValueError(f"{path}: cannot be loaded with weights_only=True ({exc})") from exc
    for key in _WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a flat mapping of parameter names to tensors")
    return obj
