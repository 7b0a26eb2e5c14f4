"""What every message family shares: stamps, headers, byte buffers and the one error they raise.

The conversions read any object with the message's field names: rclpy messages (`data` an array.array)
and `rosbags` messages (`data` a numpy uint8 array) alike, which is what lets the live node and the
offline evaluator share one decoder. Every malformed message raises ConversionError (a ValueError)
naming the field that is wrong, so a caller can reject it with one `except` and keep running.
"""
from __future__ import annotations

import array as pyarray
import sys
from typing import Any

import numpy as np


NATIVE_BIG = sys.byteorder == "big"


class ConversionError(ValueError):
    """A message that cannot be converted; the text says which field, encoding or size was wrong."""


def _stamp_fields(stamp: Any) -> tuple[int, int]:
    """builtin_interfaces/Time (rclpy or rosbags: `.sec`, `.nanosec`) -> checked (sec, nanosec)."""
    try:
        sec, nanosec = int(stamp.sec), int(stamp.nanosec)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ConversionError(f"stamp must have integer fields sec and nanosec, got {stamp!r}") from exc
    if not 0 <= nanosec < 1_000_000_000:
        raise ConversionError(f"stamp.nanosec must be in [0, 1e9), got {nanosec}")
    return sec, nanosec


def stamp_to_sec(stamp: Any) -> float:
    """builtin_interfaces/Time -> float seconds."""
    sec, nanosec = _stamp_fields(stamp)
    return sec + nanosec * 1e-9


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds: exact, so messages of one instant share it as a key."""
    sec, nanosec = _stamp_fields(stamp)
    return sec * 1_000_000_000 + nanosec


def byte_view(data: Any, what: str) -> np.ndarray:
    """A message's `data` (array.array, bytes, numpy uint8, list of ints) as flat uint8, without a copy if possible."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ConversionError(f"{what}.data must be uint8 bytes, got a numpy array of {data.dtype}")
        return data.reshape(-1)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):
        pass
    try:
        return np.asarray(data, dtype=np.uint8).reshape(-1)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConversionError(f"{what}.data must be a byte sequence, got {type(data).__name__}") from exc


def native(dtype: np.dtype) -> np.dtype:
    return dtype.newbyteorder("=")


def fresh_header(header: Any, frame_id: str | None) -> Any:
    """A fresh std_msgs/Header from any Header-like object (rclpy or rosbags), never the caller's object."""
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    out = Header()
    if header is not None:
        out.stamp = Time(sec=int(header.stamp.sec), nanosec=int(header.stamp.nanosec))
        out.frame_id = str(header.frame_id)
    if frame_id is not None:
        out.frame_id = frame_id
    return out


def to_byte_array(values: np.ndarray) -> pyarray.array:
    """One bulk copy into the array.array('B') that rclpy messages hold (their per-element check is skipped)."""
    data = pyarray.array("B")
    data.frombytes(values.reshape(-1).view(np.uint8))
    return data
