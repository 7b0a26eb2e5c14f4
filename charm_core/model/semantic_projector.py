"""Semantic Projector (SP): maps one modality's backbone feature into the shared semantic space."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class SemanticProjector(nn.Module):
    """Depthwise 11x11 -> 7x7 -> 3x3 (a large, cheap receptive field), GELU, then a 1x1 channel mix.

    Residual around the whole stack, so at initialisation the projection starts close to the backbone
    feature and ImageNet-pretrained features are not scrambled before training has begun.
    Works on [N, h, w, C] channels-last maps (convolutions see a channels_last view, no copy). The 1x1
    conv runs as a matmul over the channel axis of that map: the same product, without the layout
    handling a 1x1 convolution costs on CPU.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dw11 = nn.Conv2d(dim, dim, 11, padding=5, groups=dim)
        self.dw7 = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.dw3 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.act = nn.GELU()
        self.pw = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = x.permute(0, 3, 1, 2)  # [N, C, h, w] channels_last view
        y = self.act(self.dw3(self.dw7(self.dw11(y)))).permute(0, 2, 3, 1)  # [N, h, w, C] view
        return x + F.linear(y, self.pw.weight.flatten(1), self.pw.bias)
