"""What every dataset loader shares: modality specs, file reading, eval resize / training augmentation
and the final encoding into network tensors.

A loader (DELIVER layout, MCubeS, MUSES, MFNet) knows its files: it lists `samples` (each with a
`condition`, '' where the dataset has none) and implements `load_raw(index)` -> ({modality: HxWx3
image at label size}, HxW train ids). Images are uint8 (color, depth, event, lidar kinds, as stored)
or float32 in [0, 1] (intensity and angle, already encoded by charm_core.encoders; 16-bit colour as
float). `__getitem__` then resizes or augments and encodes, the same way for every dataset.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from charm_core.data.augment import AugmentConfig, augment, deliver_eval_resize, resize, sparse_names
from charm_core.encoders.angle import encode_angle
from charm_core.encoders.intensity import encode_intensity, to_physical
from charm_core.encoders.rgb import frame_to_network
from charm_core.modalities import ModalityEntry, ModalitySpec, resolve_modalities, specs_by_name


@dataclass(frozen=True)
class ListedSample:
    """One frame of a list-file dataset: its name (as in the list) and condition ('' = none)."""

    name: str
    condition: str = ""


def read_image(path: Path) -> np.ndarray:
    """8-bit PNG/JPEG -> HxW or HxWx3 uint8 in the file's channel order (RGB); alpha dropped."""
    img = read_stored(path)
    if img.dtype != np.uint8:
        raise ValueError(f"{path}: expected an 8-bit image, got {img.dtype}")
    return img


def read_stored(path: Path) -> np.ndarray:
    """An image file as stored (8- or 16-bit, HxW or HxWx3 in RGB order; alpha dropped)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return img


def write_image(path: Path, img: np.ndarray) -> None:
    """The inverse of read_stored: HxW or HxWx3 (RGB) 8- or 16-bit array -> PNG, folders made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)   # PNGs hold RGB; cv2 writes BGR arrays
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")


def read_list(path: Path) -> list[str]:
    """Sample names of a split list file: the first token of each non-empty line."""
    if not path.is_file():
        raise FileNotFoundError(f"split list {path} not found")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def color_image(img: np.ndarray) -> np.ndarray:
    """A stored colour image -> uint8 HxWx3 as is, or float32 in [0, 1] for 16 bits (full scale 65535);
    a gray image is repeated."""
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.dtype == np.uint16:
        return img.astype(np.float32) / np.float32(65535.0)
    if img.dtype != np.uint8:
        raise ValueError(f"expected an 8- or 16-bit colour image, got {img.dtype}")
    return img


def single_channel(img: np.ndarray, what: str) -> np.ndarray:
    """HxW of a stored single-channel image; a 3-channel file must be gray (all channels equal)."""
    if img.ndim == 3:
        if not (np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2])):
            raise ValueError(f"{what}: expected a single-channel image, got a colour one")
        img = img[..., 0]
    return img


def encode_stored(stored: np.ndarray, spec: ModalitySpec) -> np.ndarray:
    """Stored values of an intensity / angle modality -> its float32 HxWx3 encoding in [0, 1]."""
    physical = to_physical(stored, spec)
    return encode_intensity(physical, spec) if spec.kind == "intensity" else encode_angle(physical)


# Evaluation resize: "exact" to `size` (area / bilinear, nearest for labels and sparse rasters) or
# "deliver", the reference protocol (augment.deliver_eval_resize; short side to size[0]).
EVAL_RESIZES = ("exact", "deliver")


class ModalDataset(Dataset):
    """Base of the loaders: samples -> ({modality: float32 3xHxW tensor}, int64 HxW labels, 255 = ignore).

    Evaluation (augment=False) resizes as `eval_resize` says (EVAL_RESIZES). Training
    (augment=True) applies `charm_core.data.augment` seeded by (seed, epoch, index); call `set_epoch`
    each epoch for fresh augmentations. Subclasses set CLASSES, PALETTE, SPECS (what they store under
    a modality name where it differs from the built-in spec) and `samples`, and implement load_raw.
    """

    CLASSES: tuple[str, ...] = ()
    PALETTE: np.ndarray = np.zeros((0, 3), np.uint8)
    SPECS: dict[str, ModalitySpec] = {}

    def __init__(self, root: str | Path, modalities: Iterable[ModalityEntry], size: tuple[int, int], augment: bool,
                 seed: int, augment_config: AugmentConfig, eval_resize: str = "exact") -> None:
        if eval_resize not in EVAL_RESIZES:
            raise ValueError(f"eval_resize must be one of {EVAL_RESIZES}, got {eval_resize!r}")
        self.eval_resize = eval_resize
        self.root = Path(root)
        self.specs = resolve_modalities(modalities, defaults=self.SPECS)
        if not self.specs:
            raise ValueError("at least one modality is required")
        self.modalities = tuple(s.name for s in self.specs)
        self.spec = specs_by_name(self.specs)
        self.size = (int(size[0]), int(size[1]))
        self.augment, self.seed, self.epoch, self.augment_config = augment, seed, 0, augment_config
        self.samples: list = []

    def __len__(self) -> int:
        return len(self.samples)

    @staticmethod
    def found(samples: list, nothing: str) -> list:
        """`samples`, or ValueError(`nothing`) when there are none (a wrong root or split)."""
        if not samples:
            raise ValueError(nothing)
        return samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def load_raw(self, index: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        images, labels = self.load_raw(index)
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            images, labels = augment(images, labels, self.size, rng, self.augment_config, self.spec)
        elif self.eval_resize == "deliver":
            images, labels = deliver_eval_resize(images, labels, self.size[0])
        else:
            sparse = sparse_names(images, self.spec)
            images = {k: resize(v, self.size, k in sparse) for k, v in images.items()}
            labels = resize(labels, self.size, nearest=True)
        inputs = {k: torch.from_numpy(v) for k, v in frame_to_network(images, self.spec).items()}
        return inputs, torch.from_numpy(labels.astype(np.int64))
