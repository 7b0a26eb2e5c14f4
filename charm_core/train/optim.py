"""AdamW parameter groups and the warm-up + poly learning-rate schedule of the DELIVER/CMNeXt recipe."""
from __future__ import annotations

import torch
from torch import nn


def parameter_groups(model: nn.Module, lr: float, weight_decay: float, head_lr_mult: float = 10.0
                     ) -> list[dict]:
    """Four groups: {body, head} x {decayed, not decayed}. The head is `model.decoder` (lr x head_lr_mult);
    norms, biases and other 1-D parameters get no weight decay."""
    head_ids = {id(p) for p in model.decoder.parameters()}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for param in model.parameters():
        if not param.requires_grad:
            continue
        key = (id(param) in head_ids, param.ndim > 1)
        groups.setdefault(key, []).append(param)
    return [{"params": params, "lr": lr * (head_lr_mult if is_head else 1.0),
             "weight_decay": weight_decay if decayed else 0.0,
             "name": f"{'head' if is_head else 'body'}_{'decay' if decayed else 'no_decay'}"}
            for (is_head, decayed), params in sorted(groups.items())]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, head_lr_mult: float = 10.0
                    ) -> torch.optim.AdamW:
    return torch.optim.AdamW(parameter_groups(model, lr, weight_decay, head_lr_mult), lr=lr,
                             betas=(0.9, 0.999))


def warmup_poly(total_steps: int, warmup_steps: int, warmup_ratio: float = 0.1, power: float = 0.9):
    """LR multiplier: linear from warmup_ratio to 1 over warmup_steps, then (1 - progress) ** power."""
    if total_steps <= 0:
        raise ValueError("total_steps must be positive")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return warmup_ratio + (1.0 - warmup_ratio) * step / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return max(0.0, 1.0 - progress) ** power

    return factor
