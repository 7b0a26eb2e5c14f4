"""release_memory (charm_core/inference.py): the memory of a dropped model goes back to the system, as a
deactivated node must give it back."""
from __future__ import annotations

import numpy as np
import pytest

from charm_core.inference import Predictor


def _b0_predictor(tmp_path, device: str) -> tuple[Predictor, int]:
    import torch

    from charm_core.checkpoint import save_checkpoint
    from charm_core.model import ModelConfig, build_model

    torch.manual_seed(0)
    config = ModelConfig(backbone="b0")
    path = tmp_path / "b0.safetensors"
    save_checkpoint(path, build_model(config).eval(), config, provenance={"input_size": [64, 64]})
    predictor = Predictor.from_checkpoint(path, device=device)
    predictor.predict({"rgb": np.zeros((3, 64, 64), np.float32)})
    return predictor, path.stat().st_size


def _rss_bytes() -> int:
    line = next(line for line in open("/proc/self/status") if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def test_release_memory_gives_the_models_memory_back_on_cpu(tmp_path, one_torch_thread):
    from charm_core.inference import release_memory
    from charm_core.malloc_tuning import release_freed_memory

    release_freed_memory()  # what earlier tests freed is not counted below
    predictor, size = _b0_predictor(tmp_path, "cpu")
    loaded = _rss_bytes()
    device = predictor.device
    del predictor
    release_memory(device)
    assert loaded - _rss_bytes() >= size / 2, "dropping the predictor left its memory in the process"


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="no CUDA device")
def test_release_memory_gives_the_models_memory_back_on_cuda(tmp_path):
    import torch

    from charm_core.inference import release_memory

    predictor, size = _b0_predictor(tmp_path, "cuda")
    device = predictor.device
    assert torch.cuda.memory_reserved(device) >= size
    del predictor
    release_memory(device)
    assert torch.cuda.memory_allocated(device) < size / 2 and torch.cuda.memory_reserved(device) < size / 2
