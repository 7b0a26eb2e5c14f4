"""Event counts -> 3-channel event frame (what the `event/` PNGs and the node's event Image carry).

Channel 0 = positive events, 1 = negative events, each min(255, 64 * count) so one event is already
clearly visible and four saturate; channel 2 = all events, min(255, 16 * (pos + neg)), which keeps
resolution where edges fire many times. No events -> 0 in all channels.
"""
from __future__ import annotations

import numpy as np

POLARITY_GAIN = 64
TOTAL_GAIN = 16


def events_to_frame(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """HxW positive / negative event counts -> HxWx3 uint8 event frame."""
    pos, neg = np.asarray(pos), np.asarray(neg)
    if pos.ndim != 2 or pos.shape != neg.shape:
        raise ValueError(f"pos and neg must be HxW count arrays of one shape, got {pos.shape} and {neg.shape}")
    if (pos < 0).any() or (neg < 0).any():
        raise ValueError("event counts must be non-negative")
    p = pos.astype(np.int64)
    n = neg.astype(np.int64)
    return np.stack([np.minimum(255, POLARITY_GAIN * p), np.minimum(255, POLARITY_GAIN * n),
                     np.minimum(255, TOTAL_GAIN * (p + n))], axis=-1).astype(np.uint8)
