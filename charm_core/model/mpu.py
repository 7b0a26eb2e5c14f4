"""Mutual Perception Unit (MPU): window cross-attention between the semantic feature and the modalities.

Per window of ws x ws tokens, the semantic feature S queries the concatenated tokens of all present
modalities (M' * ws^2 keys), so every pixel chooses, per head, which modality to read from. Alternate
blocks shift the windows by ws/2 (Swin's cyclic shift) so information crosses window borders. Keys
of a modality absent for a sample, of padding and of the wrapped-around regions of a shifted map are
masked out, so they cannot influence S.

Layout: S is [B, h, w, C]; modality features P are [M', B, h, w, C] in the order of `present`.
Windows are cut with one precomputed gather per tensor (pad + roll + partition + modality
interleave in a single index_select) instead of a chain of copies; the plan is built once per
stage and shift and reused by every block.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from charm_core.model.attention import Attention

Shifts = tuple[int, int]


def _padded(n: int, ws: int) -> int:
    return n + (-n) % ws


def window_partition(x: Tensor, ws: int) -> Tensor:
    """[N, hp, wp, C] -> [N, nW, ws*ws, C] (hp, wp multiples of ws)."""
    n, hp, wp, c = x.shape
    x = x.view(n, hp // ws, ws, wp // ws, ws, c).transpose(2, 3)
    return x.reshape(n, -1, ws * ws, c)


def window_grid(h: int, w: int, ws: int, shifts: Shifts, device: torch.device) -> tuple[Tensor, Tensor]:
    """Source token and region label of every window slot, both [nW, ws*ws].

    The map is zero-padded to multiples of ws and rolled by -shifts (Swin). Slot -> flat token index
    in the h*w grid (padding slots point at token 0; they are masked). Labels: two slots may attend
    each other iff their labels match. Per shifted axis, the last `shift` rows/columns are those the
    roll brought round from the other border; labelling them apart keeps them from attending the
    tokens they only met through the roll (Swin's region mask). Padding is -1, so real tokens never
    see it while padded queries (discarded) still have themselves to attend to and never give NaN.
    """
    hp, wp = _padded(h, ws), _padded(w, ws)

    def axis(n: int, npad: int, shift: int) -> tuple[Tensor, Tensor]:
        source = (torch.arange(npad, device=device) + shift) % npad  # rolled position -> original
        wrapped = (torch.arange(npad, device=device) >= npad - shift).long()  # rolled in from the start
        return source, wrapped.masked_fill(source >= n, -1)

    rows, row_region = axis(h, hp, shifts[0])
    cols, col_region = axis(w, wp, shifts[1])
    valid = (row_region >= 0)[:, None] & (col_region >= 0)[None, :]
    source = torch.where(valid, rows[:, None] * w + cols[None, :], 0)
    labels = torch.where(valid, row_region[:, None] * 2 + col_region[None, :], -1)
    grid = torch.stack([source, labels], dim=-1)[None]  # [1, hp, wp, 2]
    source, labels = window_partition(grid, ws)[0].unbind(-1)
    return source, labels


@dataclass(frozen=True)
class WindowPlan:
    """Gather indices and attention masks for one stage, shift, batch size and modality count."""
    num_windows: int
    length: int  # tokens per window
    s_index: Tensor  # [B*nW*L] rows of S.view(B*h*w, C) in window order
    s_inverse: Tensor  # [B*h*w] rows of the windowed S output back in map order
    p_index: Tensor  # [B*nW*M'*L] rows of P.view(M'*B*h*w, C), modality-major inside each window
    p_inverse: Tensor | None  # [M'*B*h*w] windowed P rows back in map order (symmetric MPU)
    forward_mask: Tensor | None  # additive [B*nW, 1, L or 1, M'*L]: S -> modalities
    reverse_mask: Tensor | None  # additive [B*nW, 1, M'*L, L]: modalities -> S (symmetric MPU)


def window_plan(h: int, w: int, ws: int, shifts: Shifts, batch: int, num_mod: int,
                available: Tensor | None, symmetric: bool, dtype: torch.dtype,
                device: torch.device) -> WindowPlan:
    """The plan for this call; `available` [B, M'] per-sample presence, None = all present.

    Indices and the per-window region masks are cached (inference repeats the same sizes); masks
    are expanded to the batch per call, which costs nothing at batch 1.
    """
    indices, region, region_rev = _cached_layout(h, w, ws, shifts, batch, num_mod, symmetric, dtype, device)
    nw, length = indices.num_windows, indices.length
    forward = reverse = None
    if available is not None:
        absent = _additive(available, dtype).repeat_interleave(length, dim=1)  # [B, M'*L]
        absent = absent[:, None, None, None, :]  # [B, 1, 1, 1, M'L]
        forward = absent.expand(-1, nw, -1, -1, -1) if region is None else region[None] + absent
    elif region is not None:
        forward = region[None].expand(batch, -1, -1, -1, -1)
    if forward is not None:
        forward = forward.reshape(batch * nw, 1, forward.shape[-2], num_mod * length)
    if region_rev is not None:
        reverse = region_rev[None].expand(batch, -1, -1, -1, -1).reshape(batch * nw, 1, num_mod * length, length)
    return replace(indices, forward_mask=forward, reverse_mask=reverse)


@functools.lru_cache(maxsize=16)
@torch.inference_mode(False)  # cached across calls: must stay usable outside inference mode too
def _cached_layout(h: int, w: int, ws: int, shifts: Shifts, batch: int, num_mod: int, symmetric: bool,
                   dtype: torch.dtype, device: torch.device) -> tuple[WindowPlan, Tensor | None, Tensor | None]:
    """Gather indices (a WindowPlan without masks) and the additive region masks of one window,
    [nW, 1, L, M'L] for S -> modalities and [nW, 1, M'L, L] for the reverse (None: not needed)."""
    source, labels = window_grid(h, w, ws, shifts, device)
    nw, length = source.shape
    hw = h * w
    slot_of = torch.empty(hw, dtype=torch.long, device=device)  # map token -> its window slot
    real = labels.flatten() >= 0
    slot_of[source.flatten()[real]] = real.nonzero().flatten()
    b = torch.arange(batch, device=device)
    m = torch.arange(num_mod, device=device)
    s_index = (b[:, None] * hw + source.flatten()[None]).flatten()
    s_inverse = (b[:, None] * nw * length + slot_of[None]).flatten()
    # p rows are (m, b, token); windowed rows are (b, window, m, slot-in-window).
    p_index = (m[None, None, :, None] * batch * hw + b[:, None, None, None] * hw
               + source[None, :, None, :]).flatten()
    p_inverse = None
    if symmetric:
        win, pos = slot_of // length, slot_of % length
        p_inverse = (b[None, :, None] * nw * num_mod * length + win[None, None] * num_mod * length
                     + m[:, None, None] * length + pos[None, None]).flatten()
    indices = WindowPlan(nw, length, s_index, s_inverse, p_index, p_inverse, None, None)
    if not bool((labels != 0).any()):  # no padding, no shift: every window attends in full
        return indices, None, None
    region = _additive(labels[:, :, None] == labels[:, None, :], dtype)[:, None]  # [nW, 1, L, L]
    region_rev = region.repeat(1, 1, num_mod, 1) if symmetric else None
    return indices, region.repeat(1, 1, 1, num_mod), region_rev


def _additive(allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """Bool mask -> additive float mask, built once so attention does not convert it on every call."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, float("-inf"))


class MPUBlock(nn.Module):
    """Pre-norm block: [symmetric: modalities read S] -> S reads the modalities -> MLP on S."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, symmetric: bool):
        super().__init__()
        self.norm_s = nn.LayerNorm(dim)
        self.norm_m = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm_mlp = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        if symmetric:
            # Modality tokens query S and are updated; the updated tokens are the keys and values
            # of this block's S->modalities attention and of the following blocks.
            self.norm_rev_m = nn.LayerNorm(dim)
            self.norm_rev_s = nn.LayerNorm(dim)
            self.attn_rev = Attention(dim, heads)
        self.symmetric = symmetric

    def forward(self, s: Tensor, p: Tensor, embed: Tensor, plan: WindowPlan,
                p_hat: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """s [B, h, w, C], p [M', B, h, w, C], embed [M', C] modality embeddings; p_hat: p layer-normalised
        without affine (what norm_m computes before its own scale and shift), when the caller has it."""
        m, c = p.shape[0], p.shape[-1]
        nwin, length = s.shape[0] * plan.num_windows, plan.length
        if self.symmetric:
            q = self.norm_rev_m(p).view(-1, c).index_select(0, plan.p_index).view(nwin, m * length, c)
            kv = self.norm_rev_s(s).view(-1, c).index_select(0, plan.s_index).view(nwin, length, c)
            out = self.attn_rev(q, kv, plan.reverse_mask).view(-1, c)
            p = p + out.index_select(0, plan.p_inverse).view(p.shape)
        if p_hat is None:
            keys = self.norm_m(p).add_(embed[:, None, None, None]).view(-1, c)
        else:  # norm_m(p) + embed in one pass
            keys = torch.addcmul((self.norm_m.bias + embed)[:, None, None, None], p_hat, self.norm_m.weight).view(-1, c)
        keys = keys.index_select(0, plan.p_index).view(nwin, m * length, c)
        q = self.norm_s(s).view(-1, c).index_select(0, plan.s_index).view(nwin, length, c)
        out = self.attn(q, keys, plan.forward_mask).view(-1, c)
        s = s + out.index_select(0, plan.s_inverse).view(s.shape)
        return s + self.mlp(self.norm_mlp(s)), p


class MutualPerceptionUnit(nn.Module):
    """`blocks` MPU blocks for one stage; odd blocks use windows shifted by ws/2."""

    def __init__(self, dim: int, num_modalities: int, window: int, blocks: int, mlp_ratio: float,
                 symmetric: bool):
        super().__init__()
        heads = max(1, dim // 32)
        # Which modality a key token came from; content alone may not tell depth from LiDAR.
        self.modality_embed = nn.Parameter(torch.zeros(num_modalities, dim))
        nn.init.trunc_normal_(self.modality_embed, std=0.02)
        self.blocks = nn.ModuleList(MPUBlock(dim, heads, mlp_ratio, symmetric) for _ in range(blocks))
        self.window = window
        self.symmetric = symmetric

    def forward(self, s: Tensor, p: Tensor, index: list[int], available: Tensor | None) -> Tensor:
        """s [B, h, w, C] initial semantic feature; p [M', B, h, w, C]; index: rows of modality_embed;
        available [B, M'] or None (all present). Returns the refined semantic feature [B, h, w, C]."""
        m, b, h, w = (int(n) for n in p.shape[:4])  # Python ints even when traced: a fixed window plan
        ws = self.window
        embed = torch.stack([self.modality_embed[i] for i in index])  # no index tensor: no GPU stall
        plans: dict[Shifts, WindowPlan] = {}
        # Only the symmetric blocks change p: otherwise every block normalises the same p, so it is
        # normalised once here and each block applies its own scale and shift.
        p_hat = None if self.symmetric or not self.blocks else \
            F.layer_norm(p, p.shape[-1:], eps=self.blocks[0].norm_m.eps)
        for i, blk in enumerate(self.blocks):
            # Shifting an axis that holds a single window would only split that window.
            shifts = (ws // 2 if i % 2 and h > ws else 0, ws // 2 if i % 2 and w > ws else 0)
            if shifts not in plans:
                plans[shifts] = window_plan(h, w, ws, shifts, b, m, available, self.symmetric, s.dtype,
                                            s.device)
            s, p = blk(s, p, embed, plans[shifts], p_hat)
        return s
