"""MFNet RGB-T (9 classes: unlabeled, car, person, bike, curve, car_stop, guardrail, color_cone, bump).

Semantics of the reference loader (semseg/datasets/mfnet.py, jamycheung/DELIVER):
- frames: the first token of each line of train.txt (split train) or test.txt (splits val and test);
- files: rgb/<n>.jpg (RGB, first three channels), ther/<n>.jpg (8-bit thermal; /255, replicated to
  3 channels), labels/<n>.png (channel 0 holds the class id);
- labels are used as they are: 0 (unlabeled) is class 0 and is trained and scored like the others.
Ours on top: label values above 8 become ignore (255). The thermal image is MFNet's 8-bit rendering,
not Kelvin, hence this dataset's own `thermal` spec (full scale -> [0, 1]). Frames named ...D / ...N
carry the condition day / night. Resizing and augmentation are the shared ones.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from charm_core.classes import IGNORE_INDEX
from charm_core.data.augment import AugmentConfig
from charm_core.data.base import ListedSample, ModalDataset, color_image, encode_stored, read_list, read_stored
from charm_core.modalities import ModalityEntry, ModalitySpec

MFNET_CLASSES: tuple[str, ...] = ("unlabeled", "car", "person", "bike", "curve", "car_stop", "guardrail",
                                  "color_cone", "bump")
# MFNet's colours for classes 1..8 (the reference lists those eight); unlabeled is black.
MFNET_PALETTE = np.array([[0, 0, 0], [64, 0, 128], [64, 64, 0], [0, 128, 192], [0, 0, 192], [128, 128, 0],
                          [64, 64, 128], [192, 128, 128], [192, 64, 0]], dtype=np.uint8)
LISTS = {"train": "train.txt", "val": "test.txt", "test": "test.txt"}
FILES = {"rgb": ("rgb", ".jpg"), "thermal": ("ther", ".jpg")}


def mfnet_labels(raw: np.ndarray) -> np.ndarray:
    """Label values -> train ids: 0..8 as they are (0 = unlabeled is a class), others -> 255."""
    raw = np.asarray(raw).astype(np.int64)
    return np.where((raw >= 0) & (raw < len(MFNET_CLASSES)), raw, IGNORE_INDEX).astype(np.uint8)


def _condition(name: str) -> str:
    return {"D": "day", "N": "night"}.get(name[-1:], "")


class MFNetDataset(ModalDataset):
    """MFNet frames under `root`; modalities rgb and thermal."""

    CLASSES = MFNET_CLASSES
    PALETTE = MFNET_PALETTE
    SPECS = {"thermal": ModalitySpec("thermal", "intensity", range=(0.0, 1.0))}

    def __init__(self, root: str | Path, split: str, modalities: Iterable[ModalityEntry] = ("rgb", "thermal"),
                 size: tuple[int, int] = (480, 640), augment: bool = False, seed: int = 0,
                 augment_config: AugmentConfig = AugmentConfig(), eval_resize: str = "exact") -> None:
        super().__init__(root, modalities, size, augment, seed, augment_config, eval_resize)
        wrong = [s.name for s in self.specs if s.name not in FILES]
        if wrong or any(s.kind != ("color" if s.name == "rgb" else "intensity") for s in self.specs):
            raise ValueError("MFNet provides rgb (color) and thermal (intensity), "
                             f"not {wrong or list(self.modalities)}")
        if split not in LISTS:
            raise ValueError(f"split must be one of {tuple(LISTS)}, got {split!r}")
        listing = self.root / LISTS[split]
        self.samples = self.found([ListedSample(n, _condition(n)) for n in read_list(listing)],
                                  f"{listing} lists no frames")

    def load_raw(self, index: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        n = self.samples[index].name
        raw = read_stored(self.root / "labels" / f"{n}.png")
        labels = mfnet_labels(raw[..., 0] if raw.ndim == 3 else raw)
        images: dict[str, np.ndarray] = {}
        for spec in self.specs:
            folder, suffix = FILES[spec.name]
            img = read_stored(self.root / folder / f"{n}{suffix}")
            if spec.name == "rgb":
                img = color_image(img)
            else:  # a 3-channel thermal JPEG repeats its gray value: its first channel is the image
                img = encode_stored(img[..., 0] if img.ndim == 3 else img, spec)
            if img.shape[:2] != labels.shape:
                raise ValueError(f"MFNet {n}: {spec.name} is {img.shape[:2]}, its labels {labels.shape}")
            images[spec.name] = img
        return images, labels
