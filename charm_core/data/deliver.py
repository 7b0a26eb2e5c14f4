"""DELIVER-layout dataset: the real DELIVER release and our synthetic output load the same way.

Layout: <root>/img/<condition>/<split>/<sequence>/<frame>_rgb_front.png, with the other modalities
found as DELIVER's reference loader finds them, by replacing the folder `img` and the token `_rgb`:
hha/..._depth (the depth modality is read from the HHA images), event/..._event, lidar/..._lidar,
semantic/..._semantic. Any other modality lives in a folder of its own name with its name as the
token (thermal/..._thermal): a single-channel 8- or 16-bit PNG of stored values that its spec turns
into physical units (the synthetic thermal camera writes centi-Kelvin). A sensor-failure case is a
substring of the sample path (e.g. a sequence folder `MAP_3_point120_motionblur`), as in the reference.
Frames are found through img/ as in the reference, or through semantic/ in a set without RGB.

Also as in the reference: event images are resized to the RGB size with (floor) nearest neighbour; the label
is channel 0 (R) of the semantic PNG with raw 0 (and 255) -> 255 ignore and raw k -> k - 1; RGB gets
ImageNet normalization and every other modality is divided by 255 (intensity and angle modalities:
their spec's normalisation; one stored smaller than its labels, a lower-resolution camera, is resized
bilinearly). Raw ids above 25 (not DELIVER classes) also become ignore instead of out-of-range targets.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from charm_core.classes import DELIVER_CLASSES, DELIVER_PALETTE, IGNORE_INDEX
from charm_core.data.augment import AugmentConfig, floor_nearest, resize
from charm_core.data.base import ModalDataset, encode_stored, read_image, read_stored, single_channel
from charm_core.data.synthetic.conditions import CASES, CONDITIONS
from charm_core.modalities import DELIVER_MODALITIES, ModalityEntry

SPLITS = ("train", "val", "test")
# modality -> (top-level folder, file-name token replacing "_rgb"); others: (name, "_" + name)
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
        """File of a modality ("rgb", "depth", "thermal", ...) or of the labels ("semantic")."""
        folder, token = FOLDERS.get(modality, (modality, f"_{modality}"))
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
    found = sorted((root / "img").glob(f"*/{split}/*/*_rgb*.png"))
    if not found:  # a set rendered without RGB: the labels name the frames
        found = [root / "img" / p.relative_to(root / "semantic").parent / p.name.replace("_semantic", "_rgb", 1)
                 for p in sorted((root / "semantic").glob(f"*/{split}/*/*_semantic*.png"))]
    for path in found:
        rel = path.relative_to(root)
        condition = rel.parts[1]
        case = _case_of(rel)
        if condition in conds and (wanted is None or case in wanted):
            samples.append(DeliverSample(root, rel, condition, split, rel.parts[3], case))
    return samples


def read_labels(path: Path) -> np.ndarray:
    """Semantic PNG -> train ids (channel 0, i.e. red, holds the raw id, as the reference reads it)."""
    img = read_image(path)
    return deliver_labels(img[..., 0] if img.ndim == 3 else img)


class DeliverDataset(ModalDataset):
    """DELIVER-layout frames -> ({modality: float32 3xHxW tensor}, int64 HxW labels, 255 = ignore).

    `modalities`: names or specs (charm_core.modalities). Evaluation (augment=False) resizes as
    `eval_resize` says (EVAL_RESIZES: exact to `size`, or DELIVER's protocol). Training (augment=True)
    applies `charm_core.data.augment` seeded by (seed, epoch, index); call `set_epoch` each epoch for
    fresh augmentations.
    """

    CLASSES = DELIVER_CLASSES
    PALETTE = DELIVER_PALETTE

    def __init__(self, root: str | Path, split: str, modalities: Iterable[ModalityEntry] = DELIVER_MODALITIES,
                 size: tuple[int, int] = (256, 256), conditions: Iterable[str] | None = None,
                 cases: Iterable[str | None] | None = None, augment: bool = False, seed: int = 0,
                 augment_config: AugmentConfig = AugmentConfig(), eval_resize: str = "exact") -> None:
        super().__init__(root, modalities, size, augment, seed, augment_config, eval_resize)
        self.samples = self.found(find_samples(self.root, split, conditions, cases),
                                  f"no DELIVER samples under {self.root}/img/*/{split}/*/ for conditions={conditions}, "
                                  f"cases={cases}")

    def load_raw(self, index: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The sample as stored: HxWx3 images per modality at label size (uint8 as stored; float32
        encodings for intensity / angle; event resized nearest) and train ids."""
        s = self.samples[index]
        labels = read_labels(s.path("semantic"))
        images = {}
        for spec in self.specs:
            m, path = spec.name, s.path(spec.name)
            if spec.kind in ("intensity", "angle"):
                img = encode_stored(single_channel(read_stored(path), str(path)), spec)
                img = resize(img, labels.shape, nearest=False)
            else:
                img = read_image(path)
                if img.ndim == 2:
                    img = np.repeat(img[..., None], 3, axis=2)
                if spec.kind == "event":
                    img = floor_nearest(img, labels.shape)
            if img.shape[:2] != labels.shape:
                raise ValueError(f"{path}: size {img.shape[:2]} differs from its labels {labels.shape}")
            images[m] = img
        return images, labels
