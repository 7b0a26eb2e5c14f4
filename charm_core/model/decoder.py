"""SegFormer's all-MLP decoder: per-stage linear to a common width, fuse, classify at 1/4 resolution."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class SegFormerHead(nn.Module):
    """linear_c{i} (C_i -> D) per stage, upsample to stage 1, concat, 1x1 fuse + BN + ReLU, classify.

    Computed in an equivalent, cheaper order: the fuse conv's weight is split by input stage and
    multiplied into that stage's linear (two linear maps in a row are one), the product is applied at
    the stage's own resolution and the results are upsampled and summed. Bilinear upsampling and 1x1
    convolutions are both linear and commute, so this equals SegFormer's concat-then-fuse, while the
    4D -> D product on the 1/4-resolution map, which dominated the head, disappears. Parameters (and
    so what is learned) are SegFormer's.
    """

    def __init__(self, in_dims: tuple[int, ...], dim: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        self.dim = dim
        self.linear_c = nn.ModuleList(nn.Linear(c, dim) for c in in_dims)
        self.linear_fuse = nn.Conv2d(dim * len(in_dims), dim, 1, bias=False)
        self.bn = nn.BatchNorm2d(dim)
        self.act = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout2d(dropout)
        self.linear_pred = nn.Conv2d(dim, num_classes, 1)

    def forward(self, feats: list[Tensor]) -> Tensor:
        """Four [B, h_s, w_s, C_s] maps -> logits [B, num_classes, h_1, w_1] (1/4 resolution)."""
        size = feats[0].shape[1:3]
        fuse = self.linear_fuse.weight.flatten(1).split(self.dim, dim=1)  # D x D per stage
        x = None
        for f, linear, w_fuse in zip(feats, self.linear_c, fuse):
            y = F.linear(f, w_fuse @ linear.weight, w_fuse @ linear.bias)  # [B, h_s, w_s, D]
            y = y.permute(0, 3, 1, 2)  # channels_last view
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            x = y if x is None else x.add_(y)
        return self.linear_pred(self.dropout(self.act(self.bn(x))))
