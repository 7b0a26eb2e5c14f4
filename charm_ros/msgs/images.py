"""sensor_msgs/Image (and CompressedImage) <-> numpy, in cv_bridge's semantics.

cv_bridge is not installable from PyPI, so this reproduces imgmsg_to_cv2 "passthrough" in plain numpy;
CompressedImage (image_transport's compressed / compressedDepth) is decoded by `charm_ros.msgs.compressed`
and then goes through the same checks. Only the publishing side needs sensor_msgs, imported when called.
"""
from __future__ import annotations

import re
from typing import Any

import cv2
import numpy as np

from charm_ros.msgs import compressed
from charm_ros.msgs.fields import NATIVE_BIG, ConversionError, byte_view, fresh_header, native, to_byte_array

# Named encodings of sensor_msgs/image_encodings.hpp: name -> (numpy base type, channels).
_NAMED_ENCODINGS: dict[str, tuple[str, int]] = {
    "rgb8": ("u1", 3), "bgr8": ("u1", 3), "rgba8": ("u1", 4), "bgra8": ("u1", 4),
    "rgb16": ("u2", 3), "bgr16": ("u2", 3), "rgba16": ("u2", 4), "bgra16": ("u2", 4),
    "mono8": ("u1", 1), "mono16": ("u2", 1),
    # packed 4:2:2, two bytes per pixel: UYVY and YUYV byte orders
    "yuv422": ("u1", 2), "uyvy": ("u1", 2), "yuv422_yuy2": ("u1", 2), "yuyv": ("u1", 2),
    # raw colour-filter mosaics, named by their top-left 2x2 block
    **{f"bayer_{pattern}{bits}": ("u1" if bits == 8 else "u2", 1)
       for pattern in ("rggb", "bggr", "gbrg", "grbg") for bits in (8, 16)},
}


# OpenCV-style TYPE encodings ("16UC1", "32FC3", ...): depth code -> numpy base type.
_TYPE_ENCODING = re.compile(r"^(8U|8S|16U|16S|32S|32F|64F)C([1-9][0-9]*)$")


_TYPE_DEPTHS = {"8U": "u1", "8S": "i1", "16U": "u2", "16S": "i2", "32S": "i4", "32F": "f4", "64F": "f8"}
_MAX_CHANNELS = 512  # OpenCV's CV_CN_MAX
_UNSUPPORTED_PREFIXES = ("nv21", "nv24", "nv12")


# Demosaicing codes as cv_bridge uses them: OpenCV names a pattern by the 2x2 block that starts at its
# second row and column, so ROS's rggb is OpenCV's BG.
_BAYER_TO_RGB = {"rggb": "COLOR_BayerBG2RGB", "bggr": "COLOR_BayerRG2RGB", "gbrg": "COLOR_BayerGR2RGB",
                 "grbg": "COLOR_BayerGB2RGB"}


_UYVY = ("yuv422", "uyvy")
_YUYV = ("yuv422_yuy2", "yuyv")
_BAYER = tuple(name for name in _NAMED_ENCODINGS if name.startswith("bayer_"))
_RGB_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "8UC3", "8UC4",
                  "rgb16", "bgr16", "rgba16", "bgra16", "mono16") + _UYVY + _YUYV + _BAYER
_DEPTH_MM_ENCODINGS = ("16UC1", "mono16")
_DEPTH_M_ENCODINGS = ("32FC1", "64FC1")
_SINGLE_CHANNEL_ENCODINGS = ("mono8", "8UC1", "mono16", "16UC1", "32FC1")


def _parse_encoding(encoding: Any) -> tuple[str, np.dtype, int]:
    """Encoding string -> (normalized name, little/big-agnostic base dtype, channels)."""
    if not isinstance(encoding, str) or not encoding.strip():
        raise ConversionError(f"image encoding must be a non-empty string, got {encoding!r}")
    text = encoding.strip()
    named = _NAMED_ENCODINGS.get(text.lower())
    if named is not None:
        return text.lower(), np.dtype(named[0]), named[1]
    match = _TYPE_ENCODING.match(text.upper())
    if match and int(match.group(2)) <= _MAX_CHANNELS:
        return text.upper(), np.dtype(_TYPE_DEPTHS[match.group(1)]), int(match.group(2))
    if text.lower().startswith(_UNSUPPORTED_PREFIXES):
        raise ConversionError(f"unsupported image encoding {text!r} (planar YUV needs colour conversion "
                              "first, e.g. image_proc)")
    raise ConversionError(f"unknown image encoding {text!r}; expected one of {sorted(_NAMED_ENCODINGS)} "
                          "or an OpenCV type such as 8UC3, 16UC1, 32FC1")


def _image_view(msg: Any) -> tuple[str, np.ndarray]:
    """Validate an Image and return (encoding, HxWxC view in the message's byte order); may alias msg.data.
    A CompressedImage (image_transport `compressed` / `compressedDepth`) is decoded instead."""
    if compressed.is_compressed(msg):
        raw = byte_view(msg.data, "compressed image")
        try:
            return compressed.decode(msg.format, raw)
        except ValueError as exc:
            raise ConversionError(str(exc)) from exc
    encoding, base, channels = _parse_encoding(getattr(msg, "encoding", None))
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ConversionError(f"image size must be positive, got height={height} width={width}")
    pixel_bytes = base.itemsize * channels
    if step < width * pixel_bytes:
        raise ConversionError(f"image step {step} is smaller than width*bytes_per_pixel = "
                              f"{width}*{pixel_bytes} for encoding {encoding}")
    raw = byte_view(msg.data, "image")
    if raw.size < step * height:
        raise ConversionError(f"image data has {raw.size} bytes, expected step*height = {step}*{height} "
                              f"= {step * height}")
    dtype = base.newbyteorder(">" if msg.is_bigendian else "<")
    view = np.ndarray((height, width, channels), dtype=dtype, buffer=raw,
                      strides=(step, pixel_bytes, base.itemsize))
    return encoding, view


def image_to_numpy(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> array, as cv_bridge.imgmsg_to_cv2(msg, "passthrough") returns it.

    HxW for one channel, HxWxC otherwise; dtype from the encoding, native byte order; row padding
    (`step`) removed. The result is a fresh C-contiguous array: it never aliases msg.data.
    """
    _, view = _image_view(msg)
    out = np.empty(view.shape, dtype=native(view.dtype))
    out[...] = view  # one pass: de-pad, byte-swap if needed, copy
    return out[:, :, 0] if out.shape[2] == 1 else out


def _yuv422_to_rgb(pixels: np.ndarray, luma_first: bool) -> np.ndarray:
    """Packed 4:2:2 (HxWx2 uint8) -> HxWx3 uint8 RGB with BT.601 studio-range coefficients."""
    luma = pixels[:, :, 0 if luma_first else 1].astype(np.float32)
    chroma = pixels[:, :, 1 if luma_first else 0].astype(np.float32)
    width = pixels.shape[1] - pixels.shape[1] % 2  # an odd last column has no chroma pair: reuse its left one
    u = np.repeat(chroma[:, 0:width:2], 2, axis=1)
    v = np.repeat(chroma[:, 1:width:2], 2, axis=1)
    if u.shape[1] < luma.shape[1]:
        u, v = np.pad(u, ((0, 0), (0, 1)), mode="edge"), np.pad(v, ((0, 0), (0, 1)), mode="edge")
    y = 1.164 * (luma - 16.0)
    u, v = u - 128.0, v - 128.0
    rgb = np.stack([y + 1.596 * v, y - 0.392 * u - 0.813 * v, y + 2.017 * u], axis=2)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def image_to_rgb(msg: Any) -> np.ndarray:
    """Any colour or gray Image -> HxWx3 uint8 RGB, the network's camera input.

    8UC3/8UC4 are taken as BGR/BGRA (OpenCV's convention, as cv_bridge does); 16-bit encodings keep
    their high byte; gray is replicated to three channels; Bayer mosaics are demosaiced (OpenCV's
    bilinear, as cv_bridge does).
    """
    encoding, view = _image_view(msg)
    if encoding not in _RGB_ENCODINGS:
        raise ConversionError(f"cannot read encoding {encoding!r} as RGB; expected one of {list(_RGB_ENCODINGS)}")
    if encoding in _UYVY or encoding in _YUYV:
        return _yuv422_to_rgb(view, luma_first=encoding in _YUYV)
    if view.dtype.itemsize == 2:
        view = view >> 8  # 16 -> 8 bit; the shift yields native uint16, cast below
    if encoding in _BAYER:
        mosaic = np.ascontiguousarray(view[:, :, 0], dtype=np.uint8)
        return cv2.cvtColor(mosaic, getattr(cv2, _BAYER_TO_RGB[encoding[6:10]]))
    rgb = np.empty(view.shape[:2] + (3,), dtype=np.uint8)
    if encoding.startswith("rgb"):
        rgb[...] = view[:, :, :3]
        return rgb
    sources = (0, 0, 0) if view.shape[2] == 1 else (2, 1, 0)  # gray, or bgr* / 8UC3 / 8UC4
    for channel, source in enumerate(sources):  # plane by plane: 3x faster than one reversed-stride copy
        rgb[:, :, channel] = view[:, :, source]
    return rgb


def image_to_depth_m(msg: Any) -> np.ndarray:
    """Depth Image -> HxW float32 metres, REP 118 units: 16UC1/mono16 are millimetres, 32FC1/64FC1 metres.

    Every invalid reading -- 0, NaN, +-inf, negative -- becomes 0.0, the one "no depth" value the
    depth encoder and the datasets use.
    """
    encoding, view = _image_view(msg)
    if view.shape[2] != 1 or encoding not in _DEPTH_MM_ENCODINGS + _DEPTH_M_ENCODINGS:
        raise ConversionError(f"cannot read encoding {encoding!r} as depth; expected one of "
                              f"{list(_DEPTH_MM_ENCODINGS + _DEPTH_M_ENCODINGS)}")
    if encoding in _DEPTH_MM_ENCODINGS:
        return view[:, :, 0].astype(np.float32) * np.float32(0.001)
    with np.errstate(over="ignore"):
        depth = view[:, :, 0].astype(np.float32)  # float64 beyond float32 range becomes inf -> invalid
    depth[~np.isfinite(depth) | (depth <= 0)] = 0.0
    return depth


def image_to_single_channel(msg: Any) -> np.ndarray:
    """Single-channel camera Image (thermal, NIR, polarization) -> HxW array of its stored values:
    uint8 (mono8/8UC1), uint16 (mono16/16UC1) or float32 (32FC1), native byte order. The values stay
    as stored, since a modality's scale/offset (charm_core.encoders.to_physical) turns them into
    physical units; a colour image is refused rather than silently made gray."""
    encoding, view = _image_view(msg)
    if encoding not in _SINGLE_CHANNEL_ENCODINGS:
        raise ConversionError(f"cannot read encoding {encoding!r} ({view.shape[2]} channel(s)) as a single-channel "
                              f"camera image; expected one of {list(_SINGLE_CHANNEL_ENCODINGS)}")
    return view[:, :, 0].astype(native(view.dtype))


def numpy_to_image(array: np.ndarray, encoding: str, header: Any = None, frame_id: str | None = None) -> Any:
    """HxW / HxWxC array -> sensor_msgs/Image: unpadded (step = width*bytes_per_pixel), native byte order.

    The array's dtype and channel count must match the encoding (as cv_bridge.cv2_to_imgmsg checks).
    """
    from sensor_msgs.msg import Image

    name, base, channels = _parse_encoding(encoding)
    values = np.asarray(array)
    if values.ndim not in (2, 3):
        raise ConversionError(f"image array must be HxW or HxWxC, got shape {values.shape}")
    got_channels = 1 if values.ndim == 2 else values.shape[2]
    if got_channels != channels or native(values.dtype) != native(base):
        raise ConversionError(f"encoding {name} needs {channels} channel(s) of {base}, got shape "
                              f"{values.shape} of {values.dtype}")
    height, width = values.shape[:2]
    if height == 0 or width == 0:
        raise ConversionError(f"image array must not be empty, got shape {values.shape}")
    values = np.ascontiguousarray(values, dtype=native(base))
    msg = Image()
    msg.header = fresh_header(header, frame_id)
    msg.height, msg.width, msg.encoding = height, width, name
    msg.is_bigendian = int(NATIVE_BIG)
    msg.step = width * channels * base.itemsize
    msg.data = to_byte_array(values)
    return msg
