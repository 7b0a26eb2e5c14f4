"""Both paths of a training step (CoL and InE) as one module call: the unit DDP wraps."""
from __future__ import annotations

from torch import Tensor, nn

from charm_core.model.segmentor import Segmentor


class DualPath(nn.Module):
    """One forward = the CoL pass on the batch's random subsets + the InE pass of modality m* alone.

    Why one forward: DistributedDataParallel arms its gradient all-reduce once per forward call and
    expects exactly one backward to fire it. Calling the DDP-wrapped model twice (CoL, then InE) before
    the single backward of L = CE_CoL + lambda * CE_InE arms it twice, and every parameter both passes
    use is "marked ready twice". With both passes inside one forward, DDP sees one graph, finds the
    parameters this step did not use (a modality's projector when no sample had it) by walking that
    graph, and all-reduces each gradient once, bucketed and overlapped with the backward as usual.
    The alternatives are worse: `no_sync()` around the first pass plus a hand-written all-reduce
    re-implements DDP's bucketing and unused-parameter handling; two backward passes all-reduce twice
    per step and change the optimisation (two half-steps of gradient instead of one sum).

    Returns (CoL logits [B, K, H, W], CoL aux, InE logits [B, K, H, W] or None when `ine_modality`
    is None). With `ine_isolated` the InE gradient stops at the shared backbone (the "protected" m*).
    """

    def __init__(self, model: Segmentor) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: dict[str, Tensor], available: Tensor, ine_modality: str | None = None,
                ine_isolated: bool = False) -> tuple[Tensor, dict, Tensor | None]:
        logits, aux = self.model(inputs, available, with_aux=True)
        single = None
        if ine_modality is not None:
            single = self.model({ine_modality: inputs[ine_modality]}, None, detach_backbone=ine_isolated)
        return logits, aux, single
