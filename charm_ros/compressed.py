"""sensor_msgs/CompressedImage payloads of image_transport's `compressed` and `compressedDepth`
transports -> (encoding, HxWxC array), so that recorded bags and live topics in those transports go
through the same Image conversions as raw images.

Formats written by image_transport_plugins (older publishers write only "jpeg" / "png"):
- compressed:      "<encoding>; jpeg compressed bgr8", "<encoding>; png compressed mono16", ...
  The payload is a JPEG/PNG of the image in the named compressed encoding: colour as BGR(A).
- compressedDepth: "16UC1; compressedDepth png" or "32FC1; compressedDepth png". The payload is a
  12-byte header (int32 format, float32 depthQuantA, depthQuantB), then a 16-bit PNG: millimetres
  for 16UC1; for 32FC1 quantized inverse depth, depth = depthQuantA / (value - depthQuantB), 0 = none.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

_DEPTH_HEADER = np.dtype([("format", "<i4"), ("quant_a", "<f4"), ("quant_b", "<f4")])


def is_transport_topic(topic: str) -> bool:
    """image_transport naming: `<base>/compressed` and `<base>/compressedDepth` carry CompressedImage."""
    return topic.rstrip("/").rsplit("/", 1)[-1] in ("compressed", "compressedDepth")


def is_compressed(msg: Any) -> bool:
    """A CompressedImage (rclpy or rosbags): it has `format`, an Image has `encoding`."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def decode(fmt: str, raw: np.ndarray) -> tuple[str, np.ndarray]:
    """(CompressedImage.format, its data as flat uint8) -> (encoding of the array, HxWxC array).

    Raises ValueError with the reason when the payload is empty, undecodable or of a kind not handled."""
    original, _, transport = (fmt if isinstance(fmt, str) else "").partition(";")
    original, transport = original.strip(), transport.strip().lower()
    if raw.size == 0:
        raise ValueError("compressed image has no data")
    if transport.startswith("compresseddepth"):
        return _decode_depth(original, transport, raw)
    image = _imdecode(raw)
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels in (3, 4):
        encoding = ("bgr" if channels == 3 else "bgra") + ("16" if image.dtype == np.uint16 else "8")
    elif image.dtype == np.uint16:
        encoding = original if original in ("16UC1", "mono16") else "mono16"
    else:
        encoding = original if original in ("8UC1", "mono8") else "mono8"
    return encoding, image.reshape(image.shape[:2] + (channels,))


def _decode_depth(original: str, transport: str, raw: np.ndarray) -> tuple[str, np.ndarray]:
    if not transport.endswith("png"):
        raise ValueError(f"compressedDepth {transport!r} is not supported here; publish it as 'png'")
    if raw.size <= _DEPTH_HEADER.itemsize:
        raise ValueError(f"compressedDepth data has {raw.size} bytes, shorter than its {_DEPTH_HEADER.itemsize}-byte header")
    header = np.frombuffer(raw[:_DEPTH_HEADER.itemsize].tobytes(), dtype=_DEPTH_HEADER)[0]
    values = _imdecode(raw[_DEPTH_HEADER.itemsize:])
    if values.ndim != 2 or values.dtype != np.uint16:
        raise ValueError(f"compressedDepth PNG must be 16-bit single channel, got {values.dtype} {values.shape}")
    if original == "16UC1":
        return "16UC1", values[..., None]
    if original == "32FC1":
        with np.errstate(divide="ignore"):
            depth = np.float32(header["quant_a"]) / (values.astype(np.float32) - np.float32(header["quant_b"]))
        depth[values == 0] = 0.0
        return "32FC1", depth[..., None]
    raise ValueError(f"compressedDepth of encoding {original!r}: expected 16UC1 or 32FC1")


def _imdecode(raw: np.ndarray) -> np.ndarray:
    image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"compressed image data ({raw.size} bytes) is not a decodable JPEG/PNG")
    return image
