"""Multi-head attention of query tokens to key/value tokens, shared by the backbone and the MPU."""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn


class Attention(nn.Module):
    """q, kv and proj linears around scaled dot-product attention (`kv` holds keys' then values' rows)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.scale = 1.0 / math.sqrt(dim // heads)  # SDPA's default, as a constant (traced graphs fold it)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, queries: Tensor, keys: Tensor, mask: Tensor | None = None) -> Tensor:
        """queries [N, L, C], keys [N, S, C], additive mask [N, 1, L or 1, S] or None -> [N, L, C]."""
        n, length, c = queries.shape
        kv = self.kv(keys)  # [N, S, 2C]: keys, then values
        q, k, v = (self._split_heads(t) for t in (self.q(queries), kv[..., :c], kv[..., c:]))
        if mask is not None and mask.dtype != q.dtype:  # autocast runs q/k/v in half precision
            mask = mask.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)  # [N, heads, L, d]
        out = out.squeeze(1) if self.heads == 1 else out.transpose(1, 2).reshape(n, length, c)
        return self.proj(out)

    def _split_heads(self, x: Tensor) -> Tensor:
        """[N, T, C] -> [N, heads, T, C / heads]. One head is a new axis, not a transpose: exported
        graphs then multiply q by k's transpose in one product instead of first copying k transposed
        (tiny, four modalities at 256x256: 2-4% of the run in ONNX Runtime and in torch)."""
        if self.heads == 1:
            return x.unsqueeze(1)
        return x.view(x.shape[0], x.shape[1], self.heads, -1).transpose(1, 2)
