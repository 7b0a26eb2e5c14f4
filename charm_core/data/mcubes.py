"""MCubeS (multimodal material segmentation: RGB, AoLP, DoLP, NIR; 20 material classes).

Semantics of the reference loader (semseg/datasets/mcubes.py, jamycheung/DELIVER):
- frames: the first token of each line of list_folder/train.txt (split train) or list_folder/test.txt
  (splits val and test: the reference validates on the test list);
- files: polL_color/<n>.png (RGB; 16-bit /65535, 8-bit /255, then ImageNet), polL_aolp_sin/<n>.npy and
  polL_aolp_cos/<n>.npy (AoLP), polL_dolp/<n>.npy (DoLP, replicated to 3 channels), NIR_warped/<n>.png
  (NIR; 16-bit /65535, 8-bit /255, replicated), GT/<n>.png (labels 0..19, 255 ignore);
- the first 192 columns of every image and label are cut off (the reference's left offset).
Ours on top: AoLP enters as [(sin + 1) / 2, (cos + 1) / 2, (sin + 1) / 2] (the reference's
[sin, cos, sin] mapped to [0, 1]), and label values above 19 become ignore instead of bad targets.
Resizing and augmentation are the shared ones (charm_core.data.augment), not the reference's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from charm_core.classes import IGNORE_INDEX
from charm_core.data.augment import AugmentConfig
from charm_core.data.base import (
    ListedSample,
    ModalDataset,
    color_image,
    encode_stored,
    read_list,
    read_stored,
    single_channel,
)
from charm_core.encoders.angle import encode_sincos
from charm_core.modalities import ModalityEntry

MCUBES_CLASSES: tuple[str, ...] = (
    "asphalt", "concrete", "metal", "road_marking", "fabric", "glass", "plaster", "plastic", "rubber", "sand",
    "gravel", "ceramic", "cobblestone", "brick", "grass", "wood", "leaf", "water", "human", "sky",
)
MCUBES_PALETTE = np.array([
    [44, 160, 44], [31, 119, 180], [255, 127, 14], [214, 39, 40], [140, 86, 75], [127, 127, 127], [188, 189, 34],
    [255, 152, 150], [23, 190, 207], [174, 199, 232], [196, 156, 148], [197, 176, 213], [247, 182, 210],
    [199, 199, 199], [219, 219, 141], [158, 218, 229], [57, 59, 121], [107, 110, 207], [156, 158, 222],
    [99, 121, 57],
], dtype=np.uint8)
LEFT_OFFSET = 192
LISTS = {"train": "train.txt", "val": "test.txt", "test": "test.txt"}
FOLDERS = {"rgb": "polL_color", "dolp": "polL_dolp", "nir": "NIR_warped", "labels": "GT"}
KINDS = {"rgb": "color", "aolp": "angle", "dolp": "intensity", "nir": "intensity"}


def mcubes_labels(raw: np.ndarray) -> np.ndarray:
    """GT values -> train ids: 0..19 as they are, everything else (255 included) -> 255."""
    raw = np.asarray(raw).astype(np.int64)
    return np.where((raw >= 0) & (raw < len(MCUBES_CLASSES)), raw, IGNORE_INDEX).astype(np.uint8)


class MCubeSDataset(ModalDataset):
    """MCubeS frames under `root` (the reference's multimodal_dataset folder); modalities of rgb, aolp,
    dolp, nir (names, or specs of those names with another normalisation)."""

    CLASSES = MCUBES_CLASSES
    PALETTE = MCUBES_PALETTE

    def __init__(self, root: str | Path, split: str,
                 modalities: Iterable[ModalityEntry] = ("rgb", "aolp", "dolp", "nir"),
                 size: tuple[int, int] = (512, 512), augment: bool = False, seed: int = 0,
                 augment_config: AugmentConfig = AugmentConfig(), eval_resize: str = "exact") -> None:
        super().__init__(root, modalities, size, augment, seed, augment_config, eval_resize)
        wrong = [s.name for s in self.specs if KINDS.get(s.name) != s.kind]
        if wrong:
            raise ValueError(f"MCubeS has no {wrong}; it provides {', '.join(f'{m} ({k})' for m, k in KINDS.items())}")
        if split not in LISTS:
            raise ValueError(f"split must be one of {tuple(LISTS)}, got {split!r}")
        listing = self.root / "list_folder" / LISTS[split]
        self.samples = self.found([ListedSample(n) for n in read_list(listing)], f"{listing} lists no frames")

    def path(self, name: str, folder: str, suffix: str) -> Path:
        return self.root / folder / f"{name}{suffix}"

    def load_raw(self, index: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        n = self.samples[index].name
        crop = np.s_[:, LEFT_OFFSET:]
        labels = mcubes_labels(single_channel(read_stored(self.path(n, FOLDERS["labels"], ".png")), "GT")[crop])
        images: dict[str, np.ndarray] = {}
        for spec in self.specs:
            if spec.name == "rgb":
                img = color_image(read_stored(self.path(n, FOLDERS["rgb"], ".png"))[crop])
            elif spec.name == "aolp":
                sin = np.load(self.path(n, "polL_aolp_sin", ".npy"))[crop]
                cos = np.load(self.path(n, "polL_aolp_cos", ".npy"))[crop]
                img = encode_sincos(sin, cos)
            elif spec.name == "dolp":
                img = encode_stored(np.load(self.path(n, FOLDERS["dolp"], ".npy"))[crop], spec)
            else:
                path = self.path(n, FOLDERS["nir"], ".png")
                img = encode_stored(single_channel(read_stored(path), str(path))[crop], spec)
            if img.shape[:2] != labels.shape:
                raise ValueError(f"MCubeS {n}: {spec.name} is {img.shape[:2]}, its labels {labels.shape}")
            images[spec.name] = img
        return images, labels
