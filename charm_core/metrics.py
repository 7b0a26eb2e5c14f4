"""Dataset-level confusion matrix and IoU, with both of the mIoU conventions we report.

DELIVER (and the MaSS papers) average IoU over all classes and count a class whose union is empty as
0; on a small or synthetic set many classes never occur, so we also report the mean over the classes
present in the ground truth, and always label which one a number is.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from charm_core.classes import IGNORE_INDEX


@dataclass
class IoUResult:
    iou: np.ndarray            # per class; 0 where the union is empty (DELIVER's rule)
    present: np.ndarray        # bool per class: has ground-truth pixels
    miou_all: float            # mean over all classes, empty union counted as 0 (DELIVER)
    miou_present: float        # mean over classes present in the ground truth
    pixel_accuracy: float

    def as_dict(self, class_names: tuple[str, ...] | list[str]) -> dict:
        return {
            "miou_all": self.miou_all, "miou_present": self.miou_present, "pixel_accuracy": self.pixel_accuracy,
            "per_class": {name: (float(v) if p else None)
                          for name, v, p in zip(class_names, self.iou, self.present)},
        }


class ConfusionMatrix:
    """Accumulates a num_classes x num_classes matrix (rows: ground truth, columns: prediction).

    A prediction of ignore_index ("no data", e.g. below the node's min_confidence) is a miss: a false
    negative of the true class, a false positive of none."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.missed = np.zeros(num_classes, dtype=np.int64)

    def update(self, pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> None:
        """Add predictions and labels of any matching shape; ignore_index (and out-of-range) labels are skipped."""
        if isinstance(pred, torch.Tensor):
            pred = pred.detach().cpu().numpy()
        if isinstance(target, torch.Tensor):
            target = target.detach().cpu().numpy()
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {pred.shape} != label shape {target.shape}")
        target = target.reshape(-1).astype(np.int64)
        pred = pred.reshape(-1).astype(np.int64)
        keep = target != self.ignore_index
        target, pred = target[keep], pred[keep]
        no_data = pred == self.ignore_index
        self.missed += np.bincount(target[no_data], minlength=self.num_classes)[: self.num_classes]
        target, pred = target[~no_data], pred[~no_data]
        for name, values in (("label", target), ("prediction", pred)):
            if values.size and (values.min() < 0 or values.max() >= self.num_classes):
                raise ValueError(f"{name} ids must be in 0..{self.num_classes - 1} or {self.ignore_index}, "
                                 f"got {values.min()}..{values.max()}")
        counts = np.bincount(target * self.num_classes + pred, minlength=self.num_classes ** 2)
        self.matrix += counts.reshape(self.num_classes, self.num_classes)

    def merge(self, other: "ConfusionMatrix") -> None:
        self.matrix += other.matrix
        self.missed += other.missed

    def compute(self) -> IoUResult:
        tp = np.diag(self.matrix).astype(np.float64)
        gt = self.matrix.sum(axis=1) + self.missed
        predicted = self.matrix.sum(axis=0)
        union = gt + predicted - tp
        iou = np.divide(tp, union, out=np.zeros_like(tp), where=union > 0)
        present = gt > 0
        total = gt.sum()
        return IoUResult(
            iou=iou * 100.0,
            present=present,
            miou_all=float(iou.mean() * 100.0),
            miou_present=float(iou[present].mean() * 100.0) if present.any() else 0.0,
            pixel_accuracy=float(tp.sum() / total * 100.0) if total else 0.0,
        )
