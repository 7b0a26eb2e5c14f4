"""DELIVER's 25 semantic classes and palette (train ids 0..24; 255 = ignore / no data)."""
from __future__ import annotations

import numpy as np

IGNORE_INDEX = 255

DELIVER_CLASSES: tuple[str, ...] = (
    "Building", "Fence", "Other", "Pedestrian", "Pole", "RoadLine", "Road", "SideWalk", "Vegetation",
    "Cars", "Wall", "TrafficSign", "Sky", "Ground", "Bridge", "RailTrack", "GroundRail", "TrafficLight",
    "Static", "Dynamic", "Water", "Terrain", "TwoWheeler", "Bus", "Truck",
)

DELIVER_PALETTE = np.array([
    [70, 70, 70], [100, 40, 40], [55, 90, 80], [220, 20, 60], [153, 153, 153], [157, 234, 50],
    [128, 64, 128], [244, 35, 232], [107, 142, 35], [0, 0, 142], [102, 102, 156], [220, 220, 0],
    [70, 130, 180], [81, 0, 81], [150, 100, 100], [230, 150, 140], [180, 165, 180], [250, 170, 30],
    [110, 190, 160], [170, 120, 50], [45, 60, 150], [145, 170, 100], [0, 0, 230], [0, 60, 100],
    [0, 0, 70],
], dtype=np.uint8)

CLASS_ID = {name: i for i, name in enumerate(DELIVER_CLASSES)}


def train_to_raw(labels: np.ndarray) -> np.ndarray:
    """Train ids 0..24 -> raw DELIVER ids 1..25, 255 (ignore) -> 0, for writing DELIVER-layout semantic
    PNGs; `charm_core.data.deliver.deliver_labels` reads them back."""
    return (labels.astype(np.uint8) + np.uint8(1)).astype(np.uint8)


def colorize(labels: np.ndarray, palette: np.ndarray = DELIVER_PALETTE) -> np.ndarray:
    """HxW class ids -> HxWx3 uint8 colours; ignore/no-data (ids beyond the palette) are black."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = palette
    return table[labels]
