"""MUSES (frame camera, event camera, LiDAR, ...; 19 Cityscapes classes; clear/fog/rain/snow x day/night).

Semantics of the reference loader (semseg/datasets/muses.py, zhengxuJosh/AnySeg):
- frames: every frame_camera/<split>/<weather>/<time>/*.png, sorted, for weather in clear, fog, rain,
  snow and time in day, night (optionally one weather and / or one time only);
- a modality's file: the frame's path with `frame_camera` replaced by the modality's folder
  (event_camera, lidar, radar, ...), read as 3-channel 8-bit (16-bit files / 256); every image and the
  labels are brought to one size;
- labels: gt_semantic/<split>/<weather>/<time>/<name with frame_camera -> gt_labelTrainIds>, channel 0,
  Cityscapes train ids 0..18.
Ours differs in one point: the reference turns 255 into 0 (road), so every unlabelled pixel trains as
road; here 255 (and any id above 18) stays ignore. Modality images are brought to the label size
(nearest for event and LiDAR rasters); resizing and augmentation are the shared ones. Our names: rgb
is frame_camera, event is event_camera, lidar is lidar; any other name is its own folder (e.g. a
configured {name: radar, kind: lidar}). The condition of a frame is "<weather>_<time>".
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from charm_core.classes import IGNORE_INDEX
from charm_core.data.augment import AugmentConfig, resize
from charm_core.data.base import ModalDataset, color_image, encode_stored, read_stored, single_channel
from charm_core.modalities import SPARSE_KINDS, ModalityEntry

MUSES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)
MUSES_PALETTE = np.array([
    [128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153], [153, 153, 153],
    [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60], [255, 0, 0],
    [0, 0, 142], [0, 0, 70], [0, 60, 100], [0, 80, 100], [0, 0, 230], [119, 11, 32],
], dtype=np.uint8)
WEATHERS = ("clear", "fog", "rain", "snow")
TIMES = ("day", "night")
SPLITS = ("train", "val", "test")
FOLDERS = {"rgb": "frame_camera", "event": "event_camera", "lidar": "lidar"}


def muses_labels(raw: np.ndarray) -> np.ndarray:
    """Cityscapes train ids 0..18 as they are; 255 and anything else -> 255 (ignore)."""
    raw = np.asarray(raw).astype(np.int64)
    return np.where((raw >= 0) & (raw < len(MUSES_CLASSES)), raw, IGNORE_INDEX).astype(np.uint8)


@dataclass(frozen=True)
class MusesSample:
    frame: Path       # relative to root: frame_camera/<split>/<weather>/<time>/<name>
    weather: str
    time: str

    @property
    def condition(self) -> str:
        return f"{self.weather}_{self.time}"

    def path(self, folder: str) -> Path:
        """The frame's file of a modality folder (the reference's `frame_camera` -> folder)."""
        return Path(folder, *self.frame.parts[1:-1], self.frame.name.replace("frame_camera", folder))

    @property
    def labels(self) -> Path:
        return Path("gt_semantic", *self.frame.parts[1:-1], self.frame.name.replace("frame_camera", "gt_labelTrainIds"))


def find_muses(root: Path, split: str, weather: str | None = None, time: str | None = None) -> list[MusesSample]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if weather is not None and weather not in WEATHERS:
        raise ValueError(f"weather must be one of {WEATHERS}, got {weather!r}")
    if time is not None and time not in TIMES:
        raise ValueError(f"time of day must be one of {TIMES}, got {time!r}")
    out = []
    for path in sorted((root / "frame_camera" / split).glob("*/*/*.png")):
        rel = path.relative_to(root)
        w, t = rel.parts[2], rel.parts[3]
        if w in WEATHERS and t in TIMES and weather in (None, w) and time in (None, t):
            out.append(MusesSample(rel, w, t))
    return out


class MusesDataset(ModalDataset):
    """MUSES frames under `root` (the folder holding frame_camera/, gt_semantic/, ...)."""

    CLASSES = MUSES_CLASSES
    PALETTE = MUSES_PALETTE

    def __init__(self, root: str | Path, split: str,
                 modalities: Iterable[ModalityEntry] = ("rgb", "event", "lidar"),
                 size: tuple[int, int] = (512, 512), weather: str | None = None, time: str | None = None,
                 augment: bool = False, seed: int = 0, augment_config: AugmentConfig = AugmentConfig(),
                 eval_resize: str = "exact") -> None:
        super().__init__(root, modalities, size, augment, seed, augment_config, eval_resize)
        self.samples = self.found(find_muses(self.root, split, weather, time),
                                  f"no MUSES frames under {self.root}/frame_camera/{split}/<weather>/<time>/ "
                                  f"(weather={weather}, time={time})")

    def load_raw(self, index: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        s = self.samples[index]
        raw = read_stored(self.root / s.labels)
        labels = muses_labels(raw[..., 0] if raw.ndim == 3 else raw)
        images: dict[str, np.ndarray] = {}
        for spec in self.specs:
            path = self.root / s.path(FOLDERS.get(spec.name, spec.name))
            img = read_stored(path)
            if spec.kind in ("intensity", "angle"):
                img = encode_stored(single_channel(img, str(path)), spec)
            else:
                if img.dtype == np.uint16 and spec.kind != "color":
                    img = (img // 256).astype(np.uint8)   # the reference's 16 -> 8 bit
                img = color_image(img)
            images[spec.name] = resize(img, labels.shape, nearest=spec.kind in SPARSE_KINDS)
        return images, labels
