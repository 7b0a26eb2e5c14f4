"""OHEM cross-entropy as in the DELIVER/CMNeXt recipe: average only the hard pixels."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from charm_core.classes import IGNORE_INDEX


class OhemCrossEntropy(nn.Module):
    """Mean CE over pixels whose loss exceeds -log(thresh), but never fewer than `min_kept` of the labelled
    pixels (the hardest ones), so easy road/sky pixels do not drown the thin classes."""

    def __init__(self, thresh: float = 0.7, min_kept_fraction: float = 1 / 16,
                 ignore_index: int = IGNORE_INDEX, class_weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("class_weights", class_weights, persistent=False)
        if not 0.0 < thresh < 1.0:
            raise ValueError(f"OHEM probability threshold must be in (0, 1), got {thresh}")
        self.loss_thresh = -math.log(thresh)
        self.min_kept_fraction = min_kept_fraction
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # logits [B, C, H, W] (float), labels [B, H, W] (long)
        pixel_loss = F.cross_entropy(logits.float(), labels, weight=self.class_weights,
                                     ignore_index=self.ignore_index, reduction="none").flatten()
        labelled = int((labels != self.ignore_index).sum())
        if labelled == 0:
            return logits.sum() * 0.0  # keeps the graph (DDP needs every parameter used)
        min_kept = max(1, int(labelled * self.min_kept_fraction))
        hard = pixel_loss[pixel_loss > self.loss_thresh]
        if hard.numel() < min_kept:
            hard, _ = pixel_loss.topk(min_kept)
        return hard.mean()
