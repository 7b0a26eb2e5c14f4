"""Images for humans: colour masks, overlays, confidence maps and contact sheets (numpy + OpenCV)."""
from __future__ import annotations

import cv2
import numpy as np

from charm_core.classes import DELIVER_PALETTE, colorize


def overlay(background: np.ndarray, labels: np.ndarray, alpha: float = 0.5,
            palette: np.ndarray = DELIVER_PALETTE) -> np.ndarray:
    """Blend the colour mask over an HxWx3 uint8 image; pixels without a class (255) keep the background."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay alpha must be in [0, 1], got {alpha}")
    if background.shape[:2] != labels.shape:
        raise ValueError(f"background {background.shape[:2]} and mask {labels.shape} differ in size")
    color = colorize(labels, palette)
    blended = cv2.addWeighted(background, 1.0 - alpha, color, alpha, 0.0)
    no_class = labels >= len(palette)
    blended[no_class] = background[no_class]
    return blended


def confidence_to_mono8(confidence: np.ndarray) -> np.ndarray:
    """Float confidence in [0, 1] -> uint8 0..255 (NaN -> 0)."""
    return np.clip(np.nan_to_num(confidence, nan=0.0) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def to_rgb_preview(image: np.ndarray) -> np.ndarray:
    """Any HxW / HxWx3 uint8 sensor image -> HxWx3 uint8 for display (mono replicated)."""
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


CAPTION_FONT = cv2.FONT_HERSHEY_SIMPLEX
CAPTION_SCALE = 0.45
ROW_LABEL_W = 80   # px left of the grid for row captions (at least; wider for long captions)
COL_LABEL_H = 22   # px above the grid for column captions


def contact_sheet(rows: list[list[np.ndarray]], row_labels: list[str] | None = None,
                  col_labels: list[str] | None = None, tile_hw: tuple[int, int] = (128, 128)) -> np.ndarray:
    """Grid of tiles (each resized to tile_hw, nearest) on black with white captions; returns RGB uint8."""
    th, tw = tile_hw
    left = max([ROW_LABEL_W] + [_text_width(t) + 8 for t in row_labels]) if row_labels else 0
    top = COL_LABEL_H if col_labels else 0
    ncols = max(len(r) for r in rows)
    sheet = np.zeros((top + len(rows) * th, left + ncols * tw, 3), np.uint8)
    for r, row in enumerate(rows):
        y = top + r * th
        if row_labels:
            _caption(sheet, row_labels[r], (4, y + th // 2))
        for c, tile in enumerate(row):
            x = left + c * tw
            sheet[y:y + th, x:x + tw] = cv2.resize(to_rgb_preview(tile), (tw, th), interpolation=cv2.INTER_NEAREST)
    for c, label in enumerate(col_labels or []):
        _caption(sheet, label, (left + c * tw + 6, 16))
    return sheet


def _text_width(text: str) -> int:
    return cv2.getTextSize(text, CAPTION_FONT, CAPTION_SCALE, 1)[0][0]


def _caption(img: np.ndarray, text: str, org: tuple[int, int]) -> None:
    cv2.putText(img, text, org, CAPTION_FONT, CAPTION_SCALE, (255, 255, 255), 1, cv2.LINE_AA)
