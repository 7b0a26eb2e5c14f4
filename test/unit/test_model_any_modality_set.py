"""Models on modality sets other than DELIVER's: every subset runs, and the output for a subset never
depends on the absent inputs (omitted, or present but masked; batch-wide and per-sample masks)."""
from __future__ import annotations

import pytest
import torch

from charm_core.modalities import all_subsets
from charm_core.model import ModelConfig, build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")
H, W = 40, 48
ATOL = 1e-4
SWIR = {"name": "swir", "kind": "intensity", "range": [0.0, 1.0]}   # a name nothing has built in
MODELS = {
    2: ("thermal", "rgb"),
    3: ("nir", "aolp", SWIR),
    5: ("rgb", "depth", "event", "lidar", "thermal"),
    6: ("thermal", "rgb", "nir", "aolp", SWIR, "lidar"),
}


def _model(modalities: tuple, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(modalities=modalities, num_classes=5, **kw)).eval()


def _inputs(names: tuple[str, ...], batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.rand(batch, 3, H, W, generator=g) for m in names}


@pytest.mark.parametrize("n", sorted(MODELS))
def test_every_subset_runs_and_absent_inputs_do_not_matter(n: int) -> None:
    model = _model(MODELS[n], mpu_blocks=1)
    names = model.cfg.modalities
    assert len(names) == n and names == tuple(m if isinstance(m, str) else m["name"] for m in MODELS[n])
    x = _inputs(names, batch=2)
    with torch.inference_mode():
        everything = model(x)
        for subset in all_subsets(names):
            alone = model({m: x[m] for m in subset})
            assert alone.shape == (2, 5, H, W) and torch.isfinite(alone).all(), subset
            mask = torch.tensor([m in subset for m in names]).expand(2, -1).clone()
            garbage = {m: v if m in subset else torch.full_like(v, float("nan")) for m, v in x.items()}
            torch.testing.assert_close(model(garbage, available=mask), alone, atol=ATOL, rtol=0)
            if len(subset) < n:   # the absent ones do matter when present: this test can fail
                assert (everything - alone).abs().max() > 100 * ATOL, subset


@pytest.mark.parametrize("n", [3, 6])
def test_per_sample_masks_match_each_sample_alone(n: int) -> None:
    model = _model(MODELS[n])
    names = model.cfg.modalities
    batch = 5
    x = _inputs(names, batch, seed=1)
    g = torch.Generator().manual_seed(2)
    available = torch.rand(batch, n, generator=g) < 0.5
    available[torch.arange(batch), torch.randint(0, n, (batch,), generator=g)] = True   # >= 1 per sample
    available[:, 1] = False                               # one modality absent for the whole batch
    garbage = {m: t.clone() for m, t in x.items()}
    for j, m in enumerate(names):
        garbage[m][~available[:, j]] = float("nan")
    with torch.inference_mode():
        batched = model(garbage, available=available)
        for i, row in enumerate(available.tolist()):
            alone = model({m: x[m][i:i + 1] for m, a in zip(names, row) if a})
            torch.testing.assert_close(batched[i:i + 1], alone, atol=ATOL, rtol=0)


def test_mean_fusion_baseline_on_six_modalities() -> None:
    model = _model(MODELS[6], arch="mean")
    x = _inputs(model.cfg.modalities, batch=1)
    with torch.inference_mode():
        for subset in all_subsets(model.cfg.modalities)[::7]:
            mask = torch.tensor([[m in subset for m in model.cfg.modalities]])
            torch.testing.assert_close(model(x, available=mask), model({m: x[m] for m in subset}), atol=ATOL, rtol=0)
