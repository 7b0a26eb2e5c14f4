"""MaSS evaluation: one model, every modality subset, summarized as Mean / Top-1 / Last-1.

Protocols: "drop" (absent modalities are not fed: the model sees only the subset) and "zero" (the
robustness-benchmark protocol: absent modalities are fed as zero tensors and marked available, i.e. the
model is not told they are missing).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
from tqdm import tqdm

from charm_core.inference import Predictor
from charm_core.metrics import ConfusionMatrix, IoUResult
from charm_core.modalities import all_subsets

PROTOCOLS = ("drop", "zero")


@dataclass
class SubsetReport:
    """Per-subset IoU (overall and per condition) plus the MaSS summary."""

    class_names: tuple[str, ...]
    results: dict[str, IoUResult]                                   # subset name -> overall
    per_condition: dict[str, dict[str, IoUResult]] = field(default_factory=dict)  # subset -> condition -> result
    served_by: dict[str, dict[str, int]] = field(default_factory=dict)  # subset -> backend -> frames

    def summary(self, metric: str = "miou_present") -> dict[str, tuple[float, str]]:
        """mean / top1 / last1 over subsets: (value, subset name; '' for the mean)."""
        values = {name: getattr(r, metric) for name, r in self.results.items()}
        best = max(values, key=values.get)
        worst = min(values, key=values.get)
        return {"mean": (float(np.mean(list(values.values()))), ""),
                "top1": (values[best], best), "last1": (values[worst], worst)}

    def compact(self, metric: str = "miou_present") -> dict[str, float]:
        """Subset name -> mIoU, plus mean/top1/last1 (the `--json` format)."""
        out = {name: round(getattr(r, metric), 4) for name, r in self.results.items()}
        out.update({key: round(value, 4) for key, (value, _) in self.summary(metric).items()})
        return out

    def details(self) -> dict:
        return {
            "subsets": {name: r.as_dict(self.class_names) for name, r in self.results.items()},
            "per_condition": {name: {cond: {"miou_present": r.miou_present, "miou_all": r.miou_all}
                                     for cond, r in conds.items()}
                              for name, conds in self.per_condition.items()},
            "summary": {metric: {k: {"value": v, "subset": s} for k, (v, s) in self.summary(metric).items()}
                        for metric in ("miou_present", "miou_all")},
        }

    def markdown(self) -> str:
        """Table: one row per subset (both mIoU conventions), then Mean / Top-1 / Last-1."""
        conditions = sorted({c for conds in self.per_condition.values() for c in conds})
        head = ["subset", "mIoU (present classes)", "mIoU (all 25, DELIVER)"] + [f"{c}" for c in conditions]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, r in self.results.items():
            conds = [f"{self.per_condition[name][c].miou_present:.1f}" if c in self.per_condition.get(name, {})
                     else "" for c in conditions]
            lines.append(f"| {name} | {r.miou_present:.1f} | {r.miou_all:.1f} | " + " | ".join(conds)
                         + (" |" if conds else "|"))
        present, full = self.summary("miou_present"), self.summary("miou_all")
        for key, label in (("mean", "**Mean**"), ("top1", "**Top-1**"), ("last1", "**Last-1**")):
            subset = f" ({present[key][1]})" if present[key][1] else ""
            lines.append(f"| {label}{subset} | {present[key][0]:.1f} | {full[key][0]:.1f} |"
                         + " |" * len(conditions))
        return "\n".join(lines)


def subset_inputs(inputs: dict[str, torch.Tensor], subset: tuple[str, ...], protocol: str
                  ) -> dict[str, torch.Tensor]:
    """The model inputs for one subset under a protocol (see module docstring)."""
    if protocol == "drop":
        return {m: inputs[m] for m in subset}
    if protocol == "zero":
        return {m: inputs[m] if m in subset else torch.zeros_like(inputs[m]) for m in inputs}
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


@torch.inference_mode()
def evaluate_subsets(model: torch.nn.Module | Predictor,
                     batches: Iterable[tuple[dict[str, torch.Tensor], torch.Tensor, list[str]]],
                     class_names: tuple[str, ...], subsets: list[tuple[str, ...]] | None = None,
                     protocol: str = "drop", device: torch.device | str = "cpu",
                     autocast_dtype: torch.dtype | None = None, progress: bool = True) -> SubsetReport:
    """Run `model` on every batch for every subset. `batches` yields (inputs, labels [B,H,W], conditions).

    `subsets` default to all of the model's modalities; names join a subset's modalities in the order
    given, which all_subsets(order) makes the model's. `model` is a Segmentor (batched, on `device`
    with `autocast_dtype`) or a Predictor (one frame at a time through its backend; `device` and
    `autocast_dtype` are the Predictor's own then). The report's `served_by` counts which backend
    answered each subset's frames.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    device = torch.device(device)
    segment = _predictor_labels(model) if isinstance(model, Predictor) else \
        _model_labels(model.eval(), autocast_dtype)
    num_classes = len(class_names)
    order = model.modalities if isinstance(model, Predictor) else model.cfg.modalities
    subsets = subsets if subsets is not None else all_subsets(order)
    overall = {"+".join(s): ConfusionMatrix(num_classes) for s in subsets}
    by_condition: dict[str, dict[str, ConfusionMatrix]] = {"+".join(s): {} for s in subsets}
    served: dict[str, Counter] = {"+".join(s): Counter() for s in subsets}
    needed = {m for s in subsets for m in s}
    for inputs, labels, conditions in tqdm(batches, desc=f"eval ({protocol})", disable=not progress,
                                           unit="batch", leave=False):
        missing = needed - set(inputs)
        if missing:
            raise ValueError(f"the data provides no {sorted(missing)} for the requested subsets")
        inputs = {m: x.to(device) for m, x in inputs.items() if m in needed}
        target = labels.numpy()
        for subset in subsets:
            name = "+".join(subset)
            pred = segment(subset_inputs(inputs, subset, protocol), served[name])
            overall[name].update(pred, target)
            for i, condition in enumerate(conditions):
                cm = by_condition[name].setdefault(condition, ConfusionMatrix(num_classes))
                cm.update(pred[i], target[i])
    return SubsetReport(
        class_names=tuple(class_names),
        results={name: cm.compute() for name, cm in overall.items()},
        per_condition={name: {c: cm.compute() for c, cm in sorted(conds.items())}
                       for name, conds in by_condition.items()},
        served_by={name: dict(counts) for name, counts in served.items()},
    )


Segment = Callable[[dict[str, torch.Tensor], Counter], np.ndarray]  # inputs, served counter -> labels [B, H, W]


def _model_labels(model: torch.nn.Module, autocast_dtype: torch.dtype | None) -> Segment:
    def segment(inputs: dict[str, torch.Tensor], served: Counter) -> np.ndarray:
        device_type = next(iter(inputs.values())).device.type
        with torch.autocast(device_type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(inputs)
        served["torch"] += logits.shape[0]
        return logits.argmax(1).cpu().numpy()
    return segment


def _predictor_labels(predictor: Predictor) -> Segment:
    def segment(inputs: dict[str, torch.Tensor], served: Counter) -> np.ndarray:
        frames = []
        for i in range(next(iter(inputs.values())).shape[0]):
            labels, _ = predictor.predict({m: x[i].cpu().numpy() for m, x in inputs.items()})
            served[predictor.last_backend] += 1
            frames.append(labels)
        return np.stack(frames)
    return segment
