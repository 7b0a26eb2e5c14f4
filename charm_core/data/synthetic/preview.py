"""Contact sheet of the synthetic world: one row per condition, one column per modality + labels."""
from __future__ import annotations

import cv2
import numpy as np

from charm_core.classes import colorize
from charm_core.data.synthetic.conditions import CONDITIONS
from charm_core.data.synthetic.world import World
from charm_core.encoders.frame import FrameEncoder

COLUMNS = ("rgb", "depth (HHA)", "event", "lidar", "labels")
LABEL_W = 64
HEADER_H = 22


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def contact_sheet(seed: int = 0, size: int = 256, t: float = 11.0) -> np.ndarray:
    """RGB uint8 image: rows = conditions (same street and moment), columns = COLUMNS."""
    rows = []
    for condition in CONDITIONS:
        world = World(seed, size_hw=(size, size), condition=condition)
        f = world.frame_at(t)
        enc = FrameEncoder((size, size), f.geometry).encode(K=f.K, image_hw=(size, size), rgb=f.rgb,
                                                             depth=f.depth, event=f.event, lidar=f.lidar)
        lidar = cv2.dilate(enc["lidar"], np.ones((2, 2), np.uint8))   # sparse dots, enlarged to be seen
        tiles = [enc["rgb"], enc["depth"], enc["event"], lidar, colorize(f.labels)]
        name = np.zeros((size, LABEL_W, 3), np.uint8)
        _text(name, condition, (4, size // 2))
        rows.append(np.concatenate([name] + tiles, axis=1))
    header = np.zeros((HEADER_H, rows[0].shape[1], 3), np.uint8)
    for i, col in enumerate(COLUMNS):
        _text(header, col, (LABEL_W + i * size + 6, 16))
    return np.concatenate([header] + rows, axis=0)
