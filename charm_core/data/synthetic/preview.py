"""Contact sheet of the synthetic world: one row per condition, one column per modality + labels."""
from __future__ import annotations

import cv2
import numpy as np

from charm_core.classes import colorize
from charm_core.data.synthetic.conditions import CONDITIONS
from charm_core.data.synthetic.world import World
from charm_core.encoders.frame import FrameEncoder
from charm_core.visualize import contact_sheet as grid

COLUMNS = ("rgb", "depth (HHA)", "event", "lidar", "labels")


def contact_sheet(seed: int = 0, size: int = 256, t: float = 11.0) -> np.ndarray:
    """RGB uint8 image: rows = conditions (same street and moment), columns = COLUMNS."""
    rows = []
    for condition in CONDITIONS:
        world = World(seed, size_hw=(size, size), condition=condition)
        f = world.frame_at(t)
        enc = FrameEncoder((size, size), f.geometry).encode(K=f.K, image_hw=(size, size), rgb=f.rgb,
                                                             depth=f.depth, event=f.event, lidar=f.lidar)
        lidar = cv2.dilate(enc["lidar"], np.ones((2, 2), np.uint8))   # sparse dots, enlarged to be seen
        rows.append([enc["rgb"], enc["depth"], enc["event"], lidar, colorize(f.labels)])
    return grid(rows, row_labels=list(CONDITIONS), col_labels=list(COLUMNS), tile_hw=(size, size))
