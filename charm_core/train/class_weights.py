"""Per-class loss weights from the training set's class frequencies (thin, rare classes count more).

w_c = clip(sqrt(median_f / f_c), lo, hi) over the classes present; absent classes get weight 1 (they
never occur as targets). The square root keeps road/sky from being ignored while poles, signs and
two-wheelers, which cover well under 1 % of the pixels, still matter in the mIoU they are scored by.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from charm_core.classes import DELIVER_CLASSES


def class_pixels(root: str | Path, labels_of=None, size: int | None = None) -> np.ndarray:
    """Pixel count per class: from charm-synth's meta.json, else counted over the dataset's labels
    (`labels_of(i)` for i < size: the real DELIVER has no meta.json)."""
    meta = Path(root) / "meta.json"
    if meta.is_file():
        counts = json.loads(meta.read_text()).get("class_pixels")
        if counts:
            return np.array([counts.get(name, 0) for name in DELIVER_CLASSES], dtype=np.float64)
    if labels_of is None:
        raise ValueError(f"{root} has no meta.json with class_pixels; pass the dataset to count labels")
    total = np.zeros(len(DELIVER_CLASSES), dtype=np.float64)
    for i in tqdm(range(size), desc="class frequencies", unit="label"):
        labels = labels_of(i)
        total += np.bincount(labels[labels < len(DELIVER_CLASSES)].ravel(), minlength=len(DELIVER_CLASSES))
    return total


def sqrt_median_weights(pixels: np.ndarray, lo: float = 0.5, hi: float = 4.0) -> torch.Tensor:
    freq = pixels / max(pixels.sum(), 1.0)
    present = freq > 0
    if not present.any():
        raise ValueError("no labelled pixels to derive class weights from")
    median = np.median(freq[present])
    weights = np.ones_like(freq)
    weights[present] = np.clip(np.sqrt(median / freq[present]), lo, hi)
    return torch.tensor(weights, dtype=torch.float32)
