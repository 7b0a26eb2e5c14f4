"""Which modalities each training step sees.

CoL: every sample gets its own random non-empty subset, so one model learns all 2^N - 1 combinations.
InE: one modality m* per step, drawn by SoftMin over a running strength estimate, so the weakest
(most fragile) modality is trained on its own most often.
"""
from __future__ import annotations

import math

import torch


def random_subset_masks(batch: int, modalities: tuple[str, ...], generator: torch.Generator,
                        full_set_prob: float = 0.0) -> torch.Tensor:
    """[B, N] bool availability, one column per modality of the model (its order), uniform over the
    non-empty subsets.

    `full_set_prob` adds extra weight on the all-present subset (the deployment common case).
    """
    k = len(modalities)
    # subset codes 1..2^k-1 uniformly; bit i of the code = modalities[i] is kept
    codes = torch.randint(1, 2 ** k, (batch,), generator=generator)
    if full_set_prob > 0:
        full = torch.rand(batch, generator=generator) < full_set_prob
        codes = torch.where(full, torch.full_like(codes, 2 ** k - 1), codes)
    bits = (codes[:, None] >> torch.arange(k)[None, :]) & 1
    return bits.bool()


class SoftMinSampler:
    """Draws m* with p_m = softmax(-strength_m / temperature); strength is an EMA of the m-only path's
    pixel accuracy on training batches (0..1). A modality not yet measured counts as strength 0, so each
    is tried early. `mode="uniform"` is the ablation without SoftMin."""

    def __init__(self, modalities: tuple[str, ...], temperature: float = 0.1, momentum: float = 0.9,
                 mode: str = "softmin") -> None:
        if mode not in ("softmin", "uniform"):
            raise ValueError(f"InE sampling mode must be 'softmin' or 'uniform', got {mode!r}")
        if temperature <= 0:
            raise ValueError("SoftMin temperature must be > 0")
        self.modalities = tuple(modalities)
        self.temperature = temperature
        self.momentum = momentum
        self.mode = mode
        self.strength = torch.full((len(self.modalities),), math.nan, dtype=torch.float64)
        self.counts = torch.zeros(len(self.modalities), dtype=torch.int64)

    def probabilities(self) -> torch.Tensor:
        if self.mode == "uniform":
            return torch.full((len(self.modalities),), 1.0 / len(self.modalities), dtype=torch.float64)
        return torch.softmax(-self.strength.nan_to_num(0.0) / self.temperature, dim=0)

    def sample(self, generator: torch.Generator) -> str:
        """Draw m*; a pure function of the statistics and `generator` (ranks drawing from equal
        generators with equal statistics agree)."""
        return self.modalities[int(torch.multinomial(self.probabilities().float(), 1, generator=generator))]

    def update(self, modality: str, accuracy: float) -> None:
        """Count a step trained on `modality` and feed back its single-modality pixel accuracy (0..1)."""
        i = self.modalities.index(modality)
        self.counts[i] += 1
        if not math.isfinite(accuracy):
            return
        if self.strength[i].isnan():
            self.strength[i] = accuracy
        else:
            self.strength[i] = self.momentum * self.strength[i] + (1 - self.momentum) * accuracy

    def state_dict(self) -> dict:
        return {"strength": self.strength.tolist(), "counts": self.counts.tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.strength = torch.tensor(state["strength"], dtype=torch.float64)
        self.counts = torch.tensor(state["counts"], dtype=torch.int64)
