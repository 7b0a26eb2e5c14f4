"""Per-stage fusion of the present modalities' features: CHARM (SP + RE + MPU) and the baselines.

All fusions take the backbone features of the present modalities stacked as [M', B, h, w, C] and an
optional per-sample availability mask [B, M'] (None = every stacked modality is present for every
sample). A modality absent for a sample gets weight zero / no keys, so its values cannot reach the
output and its parameters receive no gradient from that sample.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from charm_core.model.mpu import MutualPerceptionUnit
from charm_core.model.semantic_projector import SemanticProjector, project_all


class RobustnessEvaluator(nn.Module):
    """Per-modality 1x1 conv C -> 1 (a reliability score per pixel), softmax over present modalities.

    Scores are per modality (not shared) because what makes a pixel trustworthy differs by sensor:
    exposure for RGB, returns for LiDAR, motion for events. The 1x1 convs are stored stacked,
    [num_modalities, C], so all present modalities are scored in one batched product.
    """

    def __init__(self, dim: int, num_modalities: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_modalities, dim))
        self.bias = nn.Parameter(torch.zeros(num_modalities))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, p: Tensor, index: list[int], available: Tensor | None) -> Tensor:
        """p [M', B, h, w, C] -> weights [M', B, h, w] that sum to 1 over the present modalities."""
        # Rows by Python index: t[list] would copy an index tensor to the GPU and stall launches.
        weight = torch.stack([self.weight[i] for i in index])
        bias = torch.stack([self.bias[i] for i in index])
        scores = torch.einsum("mbhwc,mc->mbhw", p, weight) + bias[:, None, None, None]
        if available is not None:
            scores = scores.masked_fill(~available.T[:, :, None, None], float("-inf"))
        return scores.softmax(dim=0)


class CharmFusion(nn.Module):
    """One stage of CHARM: S0 = sum_m RE_m * SP_m(F_m), then MPU refines S0 against the modalities."""

    # Parameters with one row per modality (dim 0 in the model's modality order).
    PER_MODALITY_ROWS = ("evaluator.weight", "evaluator.bias", "mpu.modality_embed")

    def __init__(self, dim: int, modalities: tuple[str, ...], window: int, blocks: int,
                 mlp_ratio: float, symmetric: bool):
        super().__init__()
        self.modalities = modalities
        self.projectors = nn.ModuleDict({m: SemanticProjector(dim) for m in modalities})
        self.evaluator = RobustnessEvaluator(dim, len(modalities))
        self.mpu = MutualPerceptionUnit(dim, len(modalities), window, blocks, mlp_ratio, symmetric)

    def forward(self, feats: Tensor, present: tuple[str, ...],
                available: Tensor | None) -> tuple[Tensor, Tensor]:
        """feats [M', B, h, w, C] in `present` order -> (fused [B, h, w, C], RE weights [M', B, h, w])."""
        index = [self.modalities.index(m) for m in present]
        p = project_all([self.projectors[m] for m in present], feats)
        weights = self.evaluator(p, index, available)
        s = p[0] * weights[0, ..., None]  # [B, h, w, C], accumulated without an [M', B, h, w, C] product
        for pm, wm in zip(p[1:], weights[1:]):
            s = s.addcmul_(pm, wm[..., None])
        if self.mpu.blocks:
            s = self.mpu(s, p, index, available)
        return s, weights


def mean_fusion(feats: Tensor, available: Tensor | None) -> Tensor:
    """Average of the present modalities' features: [M', B, h, w, C] -> [B, h, w, C]."""
    if available is None:
        return feats.mean(dim=0)
    a = available.T.to(feats.dtype)[:, :, None, None, None]  # [M', B, 1, 1, 1]
    return (feats * a).sum(dim=0) / a.sum(dim=0)


def alignment_loss(feats: Tensor, fused: Tensor, available: Tensor | None) -> Tensor:
    """Explicit alignment baseline: mean (1 - cosine) between each present modality and the fusion.

    Pulls every modality's feature towards the common mean, i.e. homogenizes the modalities (what
    CHARM argues against). Samples with a single modality contribute nothing; the result is a scalar
    that stays differentiable (and zero) when no sample has two modalities.
    """
    gap = 1.0 - F.cosine_similarity(feats, fused.unsqueeze(0), dim=-1).mean(dim=(2, 3))  # [M', B]
    if available is None:
        available = torch.ones(gap.shape[::-1], dtype=torch.bool, device=gap.device)
    pairs = (available & (available.sum(dim=1, keepdim=True) > 1)).T.to(gap.dtype)
    return (gap * pairs).sum() / pairs.sum().clamp(min=1.0)
