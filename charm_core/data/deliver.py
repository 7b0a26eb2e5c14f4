"""DELIVER-layout dataset: the real DELIVER release and our synthetic output load the same way.

Layout: <root>/img/<condition>/<split>/<sequence>/<frame>_rgb_front.png, with the other modalities
found as DELIVER's reference loader finds them, by replacing the folder `img` and the token `_rgb`:
hha/..._depth (the depth modality is read from the HHA images), event/..._event, lidar/..._lidar,
semantic/..._semantic. A sensor-failure case is a substring of the sample path (e.g. a sequence
folder `MAP_3_point120_motionblur`), as in the reference.

Also as in the reference: event images are resized to the RGB size with (floor) nearest neighbour; the label
is channel 0 (R) of the semantic PNG with raw 0 (and 255) -> 255 ignore and raw k -> k - 1; RGB gets
ImageNet normalization and every other modality is divided by 255. Raw ids above 25 (not DELIVER
classes) also become ignore instead of out-of-range targets.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from charm_core.classes import DELIVER_CLASSES, IGNORE_INDEX
from charm_core.data.augment import (SPARSE_MODALITIES, AugmentConfig, augment, deliver_eval_resize, floor_nearest,
                                    resize)
from charm_core.data.synthetic.conditions import CASES, CONDITIONS
from charm_core.encoders.rgb import frame_to_network
from charm_core.modalities import MODALITIES, canonical

SPLITS = ("train", "val", "test")
# Evaluation resize: "exact" to `size` (area / bilinear, nearest for labels and sparse rasters) or
# "deliver", the reference protocol (augment.deliver_eval_resize; short side to size[0]).
EVAL_RESIZES = ("exact", "deliver")
# modality -> (top-level folder, file-name token replacing "_rgb")
FOLDERS = {"rgb": ("img", "_rgb"), "depth": ("hha", "_depth"), "event": ("event", "_event"),
           "lidar": ("lidar", "_lidar"), "semantic": ("semantic", "_semantic")}


def deliver_labels(raw: np.ndarray) -> np.ndarray:
    """Raw DELIVER ids (0 = unlabelled, 1..25 classes) -> train ids 0..24, 255 ignore."""
    raw = np.asarray(raw).astype(np.int64)
    valid = (raw >= 1) & (raw <= len(DELIVER_CLASSES))
    return np.where(valid, raw - 1, IGNORE_INDEX).astype(np.uint8)


@dataclass(frozen=True)
class DeliverSample:
    """One frame: where its files are and under which condition / case it was recorded."""

    root: Path
    rgb: Path                 # relative to root: img/<condition>/<split>/<sequence>/<name>
    condition: str
    split: str
    sequence: str
    case: str | None

    def path(self, modality: str) -> Path:
        """File of a modality ("rgb", "depth", "event", "lidar") or of the labels ("semantic")."""
        if modality not in FOLDERS:
            raise ValueError(f"unknown modality {modality!r}; expected one of {sorted(FOLDERS)}")
        folder, token = FOLDERS[modality]
        name = self.rgb.name.replace("_rgb", token, 1)
        return self.root / folder / Path(*self.rgb.parts[1:-1]) / name


def _case_of(relative: Path) -> str | None:
    text = "/".join(relative.parts[2:])  # sequence folder and file name, not condition/split names
    return next((c for c in CASES if c in text), None)


def find_samples(root: str | Path, split: str, conditions: Iterable[str] | None = None,
                 cases: Iterable[str | None] | None = None) -> list[DeliverSample]:
    """All frames of a split, optionally only some conditions and cases (None in `cases` = clean)."""
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    conds = set(CONDITIONS if conditions is None else conditions)
    if conds - set(CONDITIONS):
        raise ValueError(f"unknown conditions {sorted(conds - set(CONDITIONS))}; expected {CONDITIONS}")
    wanted = None if cases is None else set(cases)
    if wanted is not None and wanted - set(CASES) - {None}:
        raise ValueError(f"unknown cases {sorted(map(str, wanted - set(CASES) - {None}))}; expected None or {CASES}")
    samples = []
    for path in sorted((root / "img").glob(f"*/{split}/*/*_rgb*.png")):
        rel = path.relative_to(root)
        condition = rel.parts[1]
        case = _case_of(rel)
        if condition in conds and (wanted is None or case in wanted):
            samples.append(DeliverSample(root, rel, condition, split, rel.parts[3], case))
    return samples


def read_image(path: Path) -> np.ndarray:
    """8-bit PNG -> HxW or HxWx3 uint8 in the file's channel order (RGB); alpha dropped."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    if img.dtype != np.uint8:
        raise ValueError(f"{path}: expected an 8-bit image, got {img.dtype}")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return img


def read_labels(path: Path) -> np.ndarray:
    """Semantic PNG -> train ids (channel 0, i.e. red, holds the raw id, as the reference reads it)."""
    img = read_image(path)
    return deliver_labels(img[..., 0] if img.ndim == 3 else img)


class DeliverDataset(Dataset):
    """DELIVER-layout frames -> ({modality: float32 3xHxW tensor}, int64 HxW labels, 255 = ignore).

    Evaluation (augment=False) resizes as `eval_resize` says (EVAL_RESIZES). Training
    (augment=True) applies `charm_core.data.augment` seeded by (seed, epoch, index); call
    `set_epoch` each epoch for fresh augmentations.
    """

    def __init__(self, root: str | Path, split: str, modalities: Iterable[str] = MODALITIES,
                 size: tuple[int, int] = (256, 256), conditions: Iterable[str] | None = None,
                 cases: Iterable[str | None] | None = None, augment: bool = False, seed: int = 0,
                 augment_config: AugmentConfig = AugmentConfig(), eval_resize: str = "exact") -> None:
        if eval_resize not in EVAL_RESIZES:
            raise ValueError(f"eval_resize must be one of {EVAL_RESIZES}, got {eval_resize!r}")
        self.eval_resize = eval_resize
        self.root = Path(root)
        self.modalities = canonical(modalities)
        if not self.modalities:
            raise ValueError("at least one modality is required")
        self.size = (int(size[0]), int(size[1]))
        self.samples = find_samples(self.root, split, conditions, cases)
        if not self.samples:
            raise ValueError(f"no DELIVER samples under {self.root}/img/*/{split}/*/ for conditions={conditions}, "
                             f"cases={cases}")
        self.augment, self.seed, self.epoch, self.augment_config = augment, seed, 0, augment_config

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def load_raw(self, index: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The sample as stored: uint8 HxWx3 images per modality (event at label size) and train ids."""
        s = self.samples[index]
        labels = read_labels(s.path("semantic"))
        images = {}
        for m in self.modalities:
            img = read_image(s.path(m))
            if img.ndim == 2:
                img = np.repeat(img[..., None], 3, axis=2)
            if m == "event":
                img = floor_nearest(img, labels.shape)
            if img.shape[:2] != labels.shape:
                raise ValueError(f"{s.path(m)}: size {img.shape[:2]} differs from its labels {labels.shape}")
            images[m] = img
        return images, labels

    def __getitem__(self, index: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        images, labels = self.load_raw(index)
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            images, labels = augment(images, labels, self.size, rng, self.augment_config)
        elif self.eval_resize == "deliver":
            images, labels = deliver_eval_resize(images, labels, self.size[0])
        else:
            images = {k: resize(v, self.size, k in SPARSE_MODALITIES) for k, v in images.items()}
            labels = resize(labels, self.size, nearest=True)
        inputs = {k: torch.from_numpy(v) for k, v in frame_to_network(images).items()}
        return inputs, torch.from_numpy(labels.astype(np.int64))
