"""Training augmentation for multimodal samples, after DELIVER/CMNeXt's recipe.

Geometric steps (random resized crop, horizontal flip) move every modality and the label together;
photometric steps (colour jitter, Gaussian blur) touch colour cameras only, because brightness means
nothing to a depth, LiDAR or event encoding, and a thermal value is a temperature. Randomness comes
from an explicit numpy Generator, so a sample is reproducible from (seed, epoch, index)
whatever the DataLoader worker layout.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from charm_core.classes import IGNORE_INDEX
from charm_core.modalities import BUILTIN, SPARSE_KINDS, ModalitySpec


@dataclass(frozen=True)
class AugmentConfig:
    scale: tuple[float, float] = (0.5, 2.0)   # resize factor range before the crop (1 = short side fits)
    flip_p: float = 0.5
    jitter_p: float = 0.2
    jitter: float = 0.5                       # brightness/contrast/saturation factors in [1 - j, 1 + j]
    blur_p: float = 0.2
    blur_kernel: int = 3


def resize(img: np.ndarray, hw: tuple[int, int], nearest: bool) -> np.ndarray:
    """Resize HxW[xC] to hw; nearest keeps labels and sparse rasters exact, else area/bilinear."""
    h, w = hw
    if img.shape[:2] == (h, w):
        return img
    if nearest:
        interp = cv2.INTER_NEAREST_EXACT
    else:
        interp = cv2.INTER_AREA if h * w < img.shape[0] * img.shape[1] else cv2.INTER_LINEAR
    out = cv2.resize(img, (w, h), interpolation=interp)
    return out[..., None] if img.ndim == 3 and out.ndim == 2 else out


def floor_nearest(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize with source index floor(dst * in / out), in exact integer arithmetic:
    torch's "nearest" (torchvision's NEAREST) and cv2.INTER_NEAREST, which DELIVER's reference loader
    uses. (INTER_NEAREST_EXACT / "nearest-exact" sample pixel centres instead, a different pattern.)"""
    h, w = hw
    if img.shape[:2] == (h, w):
        return img
    rows = np.arange(h) * img.shape[0] // h
    cols = np.arange(w) * img.shape[1] // w
    return img[rows[:, None], cols[None, :]]


def deliver_eval_shape(h: int, w: int, short: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """DELIVER's evaluation sizes for an h x w frame: (short side scaled to `short`, Python-rounded),
    then that rounded up to multiples of 32 (what the network is fed)."""
    scale = short / min(h, w)
    scaled = (round(h * scale), round(w * scale))
    return scaled, (math.ceil(scaled[0] / 32) * 32, math.ceil(scaled[1] / 32) * 32)


def _bilinear_aa(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """HxWxC -> hw: bilinear with antialiasing; uint8 is rounded back to uint8 (torchvision's resize of a
    uint8 tensor; its uint8 fast path may differ by one grey level), float32 encodings stay float."""
    if img.shape[:2] == tuple(hw):
        return img
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    y = F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True)[0].permute(1, 2, 0)
    if img.dtype != np.uint8:
        return y.numpy().astype(img.dtype)
    return y.round_().clamp_(0, 255).to(torch.uint8).numpy()


def deliver_eval_resize(images: dict[str, np.ndarray], labels: np.ndarray, short: int
                        ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """DELIVER's evaluation resize (the reference's val transform): short side to `short`, then up to
    multiples of 32, as two resizes; every modality bilinear with antialias (LiDAR and events too, as
    there), labels floor-nearest. Frames keep their aspect ratio, so sizes can differ between frames."""
    scaled, aligned = deliver_eval_shape(*labels.shape, short)
    for hw in (scaled, aligned):
        images = {k: _bilinear_aa(v, hw) for k, v in images.items()}
        labels = floor_nearest(labels, hw)
    return images, labels


def sparse_names(names: Iterable[str], specs: Mapping[str, ModalitySpec] | None) -> set[str]:
    """The names of sparse rasters (event, LiDAR kinds): resized nearest, never interpolated."""
    table = BUILTIN if specs is None else specs
    return {k for k in names if table[k].kind in SPARSE_KINDS}


def color_jitter(rgb: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Random brightness, contrast and saturation (torchvision semantics) on uint8 RGB (or float32 in [0, 1])."""
    top = 255 if rgb.dtype == np.uint8 else 1
    x = rgb.astype(np.float32)
    b, c, s = rng.uniform(1 - strength, 1 + strength, 3)
    x = np.clip(x * b, 0, top)
    gray = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = np.clip((x - gray.mean()) * c + gray.mean(), 0, top)
    gray = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    x = np.clip(gray + (x - gray) * s, 0, top)
    return np.rint(x).astype(np.uint8) if top == 255 else x.astype(np.float32)


def random_resized_crop(images: dict[str, np.ndarray], labels: np.ndarray, size: tuple[int, int],
                        rng: np.random.Generator, scale: tuple[float, float], sparse: set[str]
                        ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Rescale by a random factor, then crop `size` at a random place; pad with 0 (labels: ignore)."""
    th, tw = size
    h, w = labels.shape
    r = rng.uniform(*scale)
    f = r * max(th / h, tw / w)
    nh, nw = max(1, int(h * f + 0.5)), max(1, int(w * f + 0.5))
    y0 = int(rng.integers(0, max(nh - th, 0) + 1))
    x0 = int(rng.integers(0, max(nw - tw, 0) + 1))

    def crop(img: np.ndarray, nearest: bool, fill: int) -> np.ndarray:
        img = resize(img, (nh, nw), nearest)[y0:y0 + th, x0:x0 + tw]
        out = np.full((th, tw) + img.shape[2:], fill, dtype=img.dtype)
        out[: img.shape[0], : img.shape[1]] = img
        return out

    out = {k: crop(v, k in sparse, 0) for k, v in images.items()}
    return out, crop(labels, True, IGNORE_INDEX)


def augment(images: dict[str, np.ndarray], labels: np.ndarray, size: tuple[int, int], rng: np.random.Generator,
            config: AugmentConfig = AugmentConfig(), specs: Mapping[str, ModalitySpec] | None = None
            ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """HxWx3 modality images (uint8, or float32 for intensity / angle) + HxW labels -> augmented copies
    of network size `size`. `specs` (name -> spec) tells the kinds; default: the built-in modalities."""
    images = dict(images)
    table = BUILTIN if specs is None else specs
    colors = [k for k in images if table[k].kind == "color"]
    if colors and rng.random() < config.jitter_p:
        for k in colors:
            images[k] = color_jitter(images[k], rng, config.jitter)
    if rng.random() < config.flip_p:
        images = {k: np.ascontiguousarray(v[:, ::-1]) for k, v in images.items()}
        labels = np.ascontiguousarray(labels[:, ::-1])
    if colors and rng.random() < config.blur_p:
        k = config.blur_kernel
        for name in colors:
            images[name] = cv2.GaussianBlur(images[name], (k, k), 0)
    return random_resized_crop(images, labels, size, rng, config.scale, sparse_names(images, specs))
