"""The assembled model: shared MiT backbone -> per-stage fusion of present modalities -> SegFormer head."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from charm_core.model.config import ModelConfig
from charm_core.model.decoder import SegFormerHead
from charm_core.model.fusion import CharmFusion, alignment_loss, mean_fusion
from charm_core.model.mit import BACKBONES, MixVisionTransformer


class Segmentor(nn.Module):
    """CHARM (arch "charm") or a fusion baseline ("mean", "align") on any subset of modalities.

    Call with `inputs` {modality: [B, 3, H, W]} and optionally `available` [B, N] bool, one column per
    modality of the model in its order (cfg.modalities). Modalities missing from `inputs` or unavailable for the whole
    batch never run through the backbone, so cost scales with the subset. With a per-sample mask only
    the available (modality, sample) pairs are encoded; the others enter the fusion as zeros (so even
    NaN in an absent input cannot leak) and are masked there. Returns logits [B, num_classes, H, W].
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        mit = BACKBONES[cfg.backbone]
        self.backbone = MixVisionTransformer(mit, drop_path=cfg.drop_path)
        if cfg.arch == "charm":
            self.fusion = nn.ModuleList(
                CharmFusion(c, cfg.modalities, cfg.window_size, cfg.mpu_blocks, cfg.mpu_mlp_ratio,
                            cfg.symmetric_mpu)
                for c in mit.embed_dims)
        self.decoder = SegFormerHead(mit.embed_dims, cfg.resolved_decoder_dim, cfg.num_classes)

    def forward(self, inputs: dict[str, Tensor], available: Tensor | None = None, with_aux: bool = False,
                detach_backbone: bool = False,
                upsample: bool = True) -> Tensor | tuple[Tensor, dict[str, Tensor | list[Tensor]]]:
        """Logits, or (logits, aux) with `with_aux` (the form to use through DistributedDataParallel).

        `detach_backbone` stops gradients at the shared encoder (the trainer's gradient-isolated InE path).
        `upsample=False` returns the head's logits at 1/4 resolution, before the bilinear upsampling
        (exported graphs upsample them channels-last, the layout their per-pixel decision reads).

        aux: "re_weights" (charm; per stage [B, len(cfg.modalities), h, w], zero for absent
        modalities) and "align_loss" (align; differentiable scalar).
        """
        present, x, avail = self._prepare(inputs, available)
        b, (h, w) = x.shape[0] // len(present), x.shape[-2:]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not detach_backbone):
            feats = [f.unflatten(0, (len(present), b)) for f in self._encode(x, avail)]  # [M', B, h, w, C]
        aux: dict[str, Tensor | list[Tensor]] = {}
        if self.cfg.arch == "charm":
            fused, weights = zip(*(fuse(f, present, avail) for fuse, f in zip(self.fusion, feats)))
            if with_aux:
                aux["re_weights"] = [self._scatter(wt, present) for wt in weights]
        else:
            fused = [mean_fusion(f, avail) for f in feats]
            if with_aux and self.cfg.arch == "align":
                losses = [alignment_loss(f, s, avail) for f, s in zip(feats, fused)]
                aux["align_loss"] = torch.stack(losses).mean()
        logits = self.decoder(list(fused))
        if upsample:
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return (logits, aux) if with_aux else logits

    def _encode(self, x: Tensor, avail: Tensor | None) -> list[Tensor]:
        """Backbone features [M'*B, h, w, C] per stage. With a per-sample mask only the available
        (modality, sample) pairs are encoded (random subsets in training leave about half of them out);
        the others are zeros, which the fusion masks out anyway."""
        if avail is None:
            return self.backbone(x)
        keep = avail.T.reshape(-1).nonzero().squeeze(1)  # in the [M'*B] stacking order
        out = []
        for f in self.backbone(x.index_select(0, keep)):
            full = f.new_zeros((x.shape[0],) + f.shape[1:])
            out.append(full.index_copy(0, keep, f))
        return out

    def _prepare(self, inputs: dict[str, Tensor],
                 available: Tensor | None) -> tuple[tuple[str, ...], Tensor, Tensor | None]:
        """Validate; return present modalities, their inputs stacked [M'*B, 3, H, W], mask [B, M'] or None."""
        if not isinstance(inputs, dict) or not inputs:
            raise ValueError("inputs must be a non-empty dict {modality: tensor [B, 3, H, W]}")
        unknown = sorted(set(inputs) - set(self.cfg.modalities))
        if unknown:
            raise ValueError(f"inputs {unknown} are not modalities of this model {list(self.cfg.modalities)}")
        given = [m for m in self.cfg.modalities if m in inputs]
        shape = inputs[given[0]].shape
        for m in given:
            t = inputs[m]
            if not torch.is_tensor(t) or t.ndim != 4 or t.shape[1] != 3 or t.shape != shape:
                got = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
                raise ValueError(f"inputs[{m!r}]: expected a tensor [B, 3, H, W] like {tuple(shape)}, got {got}")
        batch, order = shape[0], self.cfg.modalities
        if available is None:
            return tuple(given), torch.cat([inputs[m] for m in given]), None
        if not torch.is_tensor(available) or available.dtype != torch.bool or \
                tuple(available.shape) != (batch, len(order)):
            got = (available.dtype, tuple(available.shape)) if torch.is_tensor(available) else type(available)
            raise ValueError(f"available: expected a bool tensor [{batch}, {len(order)}] in order "
                             f"{order}, got {got}")
        avail = available.to(inputs[given[0]].device)[:, [order.index(m) for m in given]]
        if not bool(avail.any(dim=1).all()):
            empty = (~avail.any(dim=1)).nonzero().flatten().tolist()
            raise ValueError(f"samples {empty} have no available modality among the inputs {given}")
        keep = avail.any(dim=0).tolist()
        present = tuple(m for m, k in zip(given, keep) if k)
        avail = avail[:, keep]
        x = torch.cat([inputs[m] for m in present])
        return present, x, None if bool(avail.all()) else avail

    def per_modality_rows(self) -> set[str]:
        """State-dict keys of tensors with one row per modality (dim 0, in cfg.modalities order)."""
        if self.cfg.arch != "charm":
            return set()
        return {f"fusion.{i}.{key}" for i in range(len(self.fusion)) for key in CharmFusion.PER_MODALITY_ROWS}

    def _scatter(self, weights: Tensor, present: tuple[str, ...]) -> Tensor:
        """RE weights [M', B, h, w] -> [B, len(cfg.modalities), h, w], zeros for absent modalities."""
        out = weights.new_zeros((weights.shape[1], len(self.cfg.modalities)) + weights.shape[2:])
        for w, m in zip(weights, present):
            out[:, self.cfg.modalities.index(m)] = w
        return out


def build_model(cfg: ModelConfig) -> Segmentor:
    """The one public constructor (config -> freshly initialised model in train mode)."""
    return Segmentor(cfg)
