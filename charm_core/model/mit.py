"""SegFormer's Mix Transformer (MiT) encoder, shared by every modality.

Module and parameter names follow the official SegFormer release (patch_embed1.proj, block1.0.attn.q,
norm1, ...) so its ImageNet checkpoints load by name (other layouts: charm_core.model.weights).
LayerNorm eps also follows that release: 1e-6 in blocks and stage norms, the PyTorch default 1e-5 in
patch embeddings and the spatial-reduction norm.

Features travel as channels-last tokens [N, h*w, C]; convolutions see them through a free
permute (a channels_last NCHW view), so no layout copies are made between stages.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from charm_core.model.attention import Attention


@dataclass(frozen=True)
class MiTConfig:
    embed_dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int]
    sr_ratios: tuple[int, int, int, int]
    decoder_dim: int  # SegFormer's all-MLP head width for this encoder
    mlp_ratio: int = 4


BACKBONES: dict[str, MiTConfig] = {
    # A CPU-sized encoder of our own (no official weights): four modalities at 256x256 fit a 10 Hz budget.
    "tiny": MiTConfig((24, 48, 96, 160), (1, 1, 1, 1), (1, 1, 2, 4), (8, 4, 2, 1), decoder_dim=64),
    "b0": MiTConfig((32, 64, 160, 256), (2, 2, 2, 2), (1, 2, 5, 8), (8, 4, 2, 1), decoder_dim=256),
    "b1": MiTConfig((64, 128, 320, 512), (2, 2, 2, 2), (1, 2, 5, 8), (8, 4, 2, 1), decoder_dim=256),
    "b2": MiTConfig((64, 128, 320, 512), (3, 4, 6, 3), (1, 2, 5, 8), (8, 4, 2, 1), decoder_dim=768),
    "b3": MiTConfig((64, 128, 320, 512), (3, 4, 18, 3), (1, 2, 5, 8), (8, 4, 2, 1), decoder_dim=768),
    "b4": MiTConfig((64, 128, 320, 512), (3, 8, 27, 3), (1, 2, 5, 8), (8, 4, 2, 1), decoder_dim=768),
    "b5": MiTConfig((64, 128, 320, 512), (3, 6, 40, 3), (1, 2, 5, 8), (8, 4, 2, 1), decoder_dim=768),
}


def tokens_to_map(x: Tensor, h: int, w: int) -> Tensor:
    """[N, h*w, C] tokens -> [N, C, h, w] channels_last view (no copy)."""
    return x.unflatten(1, (h, w)).permute(0, 3, 1, 2)


def map_to_tokens(x: Tensor) -> Tensor:
    """[N, C, h, w] -> [N, h*w, C]; free when x is channels_last."""
    return x.permute(0, 2, 3, 1).flatten(1, 2)


class DropPath(nn.Module):
    """Stochastic depth: drop a sample's residual branch with probability p while training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class OverlapPatchEmbed(nn.Module):
    """Strided conv with overlapping patches (7/4 for stage 1, 3/2 after), then LayerNorm."""

    def __init__(self, in_dim: int, dim: int, patch: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(in_dim, dim, patch, stride, padding=patch // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> tuple[Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(map_to_tokens(x)), h, w


class EfficientSelfAttention(Attention):
    """Self-attention whose keys/values come from a map shrunk by `sr_ratio` (cost N*N/sr^2)."""

    def __init__(self, dim: int, heads: int, sr_ratio: int):
        super().__init__(dim, heads)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        keys = self.norm(map_to_tokens(self.sr(tokens_to_map(x, h, w)))) if self.sr_ratio > 1 else x
        return super().forward(x, keys)


class DWConv(nn.Module):
    """3x3 depthwise conv on tokens: Mix-FFN's positional cue (replaces position embeddings)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        return map_to_tokens(self.dwconv(tokens_to_map(x, h, w)))


class MixFFN(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x), h, w)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int, sr_ratio: int, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = EfficientSelfAttention(dim, heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MixFFN(dim, dim * mlp_ratio)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x), h, w))


class MixVisionTransformer(nn.Module):
    """Four-stage hierarchical encoder, strides 4/8/16/32."""

    def __init__(self, cfg: MiTConfig, drop_path: float = 0.0, in_chans: int = 3):
        super().__init__()
        self.cfg = cfg
        self.embed_dims = cfg.embed_dims
        rates = torch.linspace(0, drop_path, sum(cfg.depths)).tolist()
        dims = (in_chans,) + cfg.embed_dims
        start = 0
        for i in range(4):
            patch, stride = (7, 4) if i == 0 else (3, 2)
            setattr(self, f"patch_embed{i + 1}", OverlapPatchEmbed(dims[i], dims[i + 1], patch, stride))
            setattr(self, f"block{i + 1}", nn.ModuleList(
                Block(dims[i + 1], cfg.num_heads[i], cfg.mlp_ratio, cfg.sr_ratios[i], rates[start + j])
                for j in range(cfg.depths[i])))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(dims[i + 1], eps=1e-6))
            start += cfg.depths[i]
        self.apply(_init_weights)

    def forward(self, x: Tensor) -> list[Tensor]:
        """[N, 3, H, W] -> four channels-last feature maps [N, h_s, w_s, C_s]."""
        feats = []
        for i in range(1, 5):
            x, h, w = getattr(self, f"patch_embed{i}")(x)
            for blk in getattr(self, f"block{i}"):
                x = blk(x, h, w)
            x = getattr(self, f"norm{i}")(x)
            feats.append(x.unflatten(1, (h, w)))
            x = feats[-1].permute(0, 3, 1, 2)
        return feats


def _init_weights(m: nn.Module) -> None:
    """SegFormer's initialisation: truncated normal linears, fan-out normal convs, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
