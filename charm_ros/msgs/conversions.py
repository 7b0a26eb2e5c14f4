"""ROS message <-> numpy conversions for the node, the sensor rig and the bag evaluator.

cv_bridge and sensor_msgs_py are not installable here, so this module reproduces their semantics
(imgmsg_to_cv2 "passthrough", read_points) in plain numpy; CompressedImage (image_transport's
compressed / compressedDepth) is decoded by `charm_ros.msgs.compressed`. It reads any object with the
message's field names: rclpy messages (`data` an array.array) and `rosbags` messages (`data` a
numpy uint8 array) alike, which is what lets the live node and the offline evaluator share one decoder.
Only the publishing side (numpy -> message) needs sensor_msgs, imported when it is called.

Every malformed message raises ConversionError (a ValueError) naming the field that is wrong, so
a caller can reject it with one `except` and keep running.
"""
from __future__ import annotations

import array as pyarray
import re
import sys
from typing import Any

import cv2
import numpy as np

from charm_ros.msgs import compressed

_NATIVE_BIG = sys.byteorder == "big"

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

# sensor_msgs/PointField datatype constants -> numpy base type.
_POINTFIELD_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
_FLOAT32 = 7


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


def _byte_view(data: Any, what: str) -> np.ndarray:
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


def _image_view(msg: Any) -> tuple[str, np.ndarray]:
    """Validate an Image and return (encoding, HxWxC view in the message's byte order); may alias msg.data.
    A CompressedImage (image_transport `compressed` / `compressedDepth`) is decoded instead."""
    if compressed.is_compressed(msg):
        raw = _byte_view(msg.data, "compressed image")
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
    raw = _byte_view(msg.data, "image")
    if raw.size < step * height:
        raise ConversionError(f"image data has {raw.size} bytes, expected step*height = {step}*{height} "
                              f"= {step * height}")
    dtype = base.newbyteorder(">" if msg.is_bigendian else "<")
    view = np.ndarray((height, width, channels), dtype=dtype, buffer=raw,
                      strides=(step, pixel_bytes, base.itemsize))
    return encoding, view


def _native(dtype: np.dtype) -> np.dtype:
    return dtype.newbyteorder("=")


def image_to_numpy(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> array, as cv_bridge.imgmsg_to_cv2(msg, "passthrough") returns it.

    HxW for one channel, HxWxC otherwise; dtype from the encoding, native byte order; row padding
    (`step`) removed. The result is a fresh C-contiguous array: it never aliases msg.data.
    """
    _, view = _image_view(msg)
    out = np.empty(view.shape, dtype=_native(view.dtype))
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
    return view[:, :, 0].astype(_native(view.dtype))


def _header(header: Any, frame_id: str | None) -> Any:
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


def _to_byte_array(values: np.ndarray) -> pyarray.array:
    """One bulk copy into the array.array('B') that rclpy messages hold (their per-element check is skipped)."""
    data = pyarray.array("B")
    data.frombytes(values.reshape(-1).view(np.uint8))
    return data


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
    if got_channels != channels or _native(values.dtype) != _native(base):
        raise ConversionError(f"encoding {name} needs {channels} channel(s) of {base}, got shape "
                              f"{values.shape} of {values.dtype}")
    height, width = values.shape[:2]
    if height == 0 or width == 0:
        raise ConversionError(f"image array must not be empty, got shape {values.shape}")
    values = np.ascontiguousarray(values, dtype=_native(base))
    msg = Image()
    msg.header = _header(header, frame_id)
    msg.height, msg.width, msg.encoding = height, width, name
    msg.is_bigendian = int(_NATIVE_BIG)
    msg.step = width * channels * base.itemsize
    msg.data = _to_byte_array(values)
    return msg


def _field_views(msg: Any, names: tuple[str, ...], optional: str | None) -> dict[str, np.ndarray]:
    """HxW strided views (message byte order) of the named PointCloud2 fields; `optional` may be absent."""
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    if height * width <= 0:
        raise ConversionError(f"point cloud is empty (height={height}, width={width})")
    if point_step <= 0:
        raise ConversionError(f"point cloud point_step must be positive, got {point_step}")
    if row_step < width * point_step:
        raise ConversionError(f"point cloud row_step {row_step} is smaller than width*point_step = "
                              f"{width}*{point_step}")
    raw = _byte_view(msg.data, "point cloud")
    needed = (height - 1) * row_step + width * point_step
    if raw.size < needed:
        raise ConversionError(f"point cloud data has {raw.size} bytes, expected at least {needed} "
                              f"(height={height}, row_step={row_step}, width={width}, point_step={point_step})")
    fields: dict[str, Any] = {}
    for field in msg.fields:
        fields.setdefault(str(field.name), field)  # a repeated name: the first one wins
    missing = [name for name in names if name not in fields]
    if missing:
        raise ConversionError(f"point cloud has no field(s) {missing}; it has {list(fields)}")
    order = ">" if msg.is_bigendian else "<"
    views = {}
    for name in names + ((optional,) if optional in fields else ()):
        field = fields[name]
        base = _POINTFIELD_TYPES.get(int(field.datatype))
        if base is None:
            raise ConversionError(f"point cloud field {name!r} has unknown datatype {field.datatype}; "
                                  f"expected one of {sorted(_POINTFIELD_TYPES)}")
        dtype = np.dtype(order + base)
        offset = int(field.offset)
        if offset < 0 or offset + dtype.itemsize > point_step:
            raise ConversionError(f"point cloud field {name!r} at offset {offset} ({dtype.itemsize} bytes) "
                                  f"does not fit in point_step {point_step}")
        views[name] = np.ndarray((height, width), dtype=dtype, buffer=raw, offset=offset,
                                 strides=(row_step, point_step))
    return views


def pointcloud2_to_xyzi(msg: Any, intensity_field: str | None = "intensity") -> np.ndarray:
    """sensor_msgs/PointCloud2 of any layout -> Nx4 float32 (x, y, z, intensity), organized clouds flattened.

    Reads fields by name at their offsets (padding, float64, integer types, either byte order,
    row padding); a field with count > 1 contributes its first element. Intensity is 0 where the
    field is absent (or `intensity_field` is None) or not finite; points with a non-finite coordinate
    (no return) are dropped, so a cloud without any return yields a 0x4 array. A cloud with no points
    at all is an error.
    """
    views = _field_views(msg, ("x", "y", "z"), intensity_field)
    height, width = views["x"].shape
    points = np.zeros((height, width, 4), dtype=np.float32)
    with np.errstate(over="ignore"):  # float64 beyond float32 range becomes inf: dropped / zeroed below
        for column, name in enumerate(("x", "y", "z", intensity_field)):
            if name in views:
                points[:, :, column] = views[name]
    points = points.reshape(-1, 4)
    finite = np.isfinite(points)
    if not finite[:, 3].all():
        points[~finite[:, 3], 3] = 0.0
    keep = finite[:, :3].all(axis=1)
    return points if keep.all() else points[keep]


def xyzi_to_pointcloud2(points: np.ndarray, header: Any = None, frame_id: str | None = None) -> Any:
    """Nx4 (or Nx3, intensity 0) points -> PointCloud2 with float32 x, y, z, intensity, point_step 16."""
    values = np.asarray(points)
    if values.ndim != 2 or values.shape[1] not in (3, 4):
        raise ConversionError(f"points must be Nx3 or Nx4, got shape {values.shape}")
    xyzi = np.zeros((values.shape[0], 4), dtype=np.float32)
    xyzi[:, :values.shape[1]] = values
    cloud = xyzi.view(np.dtype([(name, np.float32) for name in ("x", "y", "z", "intensity")])).reshape(-1)
    return records_to_pointcloud2(cloud, header, frame_id)


_POINTFIELD_DATATYPES = {np.dtype(base).newbyteorder("="): datatype for datatype, base in _POINTFIELD_TYPES.items()}


def records_to_pointcloud2(cloud: np.ndarray, header: Any = None, frame_id: str | None = None) -> Any:
    """A 1-D structured array (one named field per PointField, native byte order) -> unorganized
    PointCloud2 (height 1) with the array's own offsets and itemsize as point_step."""
    from sensor_msgs.msg import PointCloud2, PointField

    fields = []
    for name in cloud.dtype.names:
        dtype, offset = cloud.dtype.fields[name][:2]
        datatype = _POINTFIELD_DATATYPES.get(dtype.newbyteorder("="))
        if datatype is None or dtype.shape:
            raise ConversionError(f"field {name!r} of type {dtype} has no PointField datatype")
        fields.append(PointField(name=name, offset=offset, datatype=datatype, count=1))
    msg = PointCloud2()
    msg.header = _header(header, frame_id)
    msg.height, msg.width = 1, cloud.shape[0]
    msg.fields = fields
    msg.is_bigendian = _NATIVE_BIG
    msg.point_step, msg.row_step = cloud.dtype.itemsize, cloud.dtype.itemsize * cloud.shape[0]
    msg.is_dense = all(bool(np.isfinite(cloud[name]).all()) for name in cloud.dtype.names)
    msg.data = _to_byte_array(np.ascontiguousarray(cloud).view(np.uint8))
    return msg


def camera_info_to_k(msg: Any) -> tuple[np.ndarray, tuple[int, int]]:
    """CameraInfo -> (3x3 float64 intrinsics, (height, width)) of the image the camera publishes.

    Binning and ROI as REP 104 and image_geometry's PinholeCameraModel apply them: binning 0 means 1,
    an all-zero ROI means the full image, and the image is the ROI (full-resolution coordinates)
    binned, so fx, fy divide by the binning and the principal point moves by the ROI offset, then
    divides. A camera with lens distortion (any nonzero D) gives P's left 3x3 instead of K: the
    intrinsics of its rectified image (image_rect), which is what the encoders need (they undistort
    nothing); an unset (all-zero) P falls back to K.
    """
    K, hw, _ = _camera_intrinsics(msg)
    return K, hw


def camera_info_summary(msg: Any) -> str:
    """One line on what camera_info_to_k makes of a CameraInfo (for the node's log)."""
    K, (height, width), notes = _camera_intrinsics(msg)
    return (f"{width}x{height}, fx {K[0, 0]:.1f} fy {K[1, 1]:.1f} cx {K[0, 2]:.1f} cy {K[1, 2]:.1f}"
            + "".join(f"; {n}" for n in notes))


def _camera_intrinsics(msg: Any) -> tuple[np.ndarray, tuple[int, int], list[str]]:
    height, width = int(msg.height), int(msg.width)
    if height <= 0 or width <= 0:
        raise ConversionError(f"camera_info size must be positive, got height={height} width={width}")
    notes = []
    k = _pinhole(msg.k, "k", 9)
    d = np.asarray(getattr(msg, "d", ()), dtype=np.float64)
    p = np.asarray(getattr(msg, "p", ()), dtype=np.float64)
    if np.any(d != 0) and p.size == 12 and p.any():
        k = _pinhole(p.reshape(3, 4)[:, :3], "p", 9)
        notes.append(f"{msg.distortion_model or 'lens'} distortion: the rectified image's intrinsics (P) are "
                     "used, so the input must be rectified (image_rect)")
    bx, by = (int(getattr(msg, f"binning_{a}", 0)) or 1 for a in "xy")
    roi = getattr(msg, "roi", None)
    x0, y0, rw, rh = (0, 0, 0, 0) if roi is None else (int(roi.x_offset), int(roi.y_offset), int(roi.width),
                                                        int(roi.height))
    if (x0, y0, rw, rh) == (0, 0, 0, 0):
        rw, rh = width, height
    if min(bx, by, x0, y0) < 0 or rw <= 0 or rh <= 0 or x0 + rw > width or y0 + rh > height:
        raise ConversionError(f"camera_info roi (x_offset={x0}, y_offset={y0}, width={rw}, height={rh}) "
                              f"does not lie inside the {width}x{height} image")
    if rw // bx == 0 or rh // by == 0:
        raise ConversionError(f"camera_info binning {bx}x{by} leaves no pixel of its {rw}x{rh} roi")
    if (bx, by) != (1, 1) or (rw, rh) != (width, height):
        k[0, :] /= bx
        k[0, 2] -= x0 / bx
        k[1, 1:] /= by
        k[1, 2] -= y0 / by
        notes.append(f"roi {rw}x{rh} at ({x0}, {y0}), binning {bx}x{by}")
    hw = (rh // by, rw // bx)
    _check_plausible(k, hw)
    return k, hw, notes


# Focal lengths outside [size / 100, size * 1000] are no pinhole camera: beyond ~178 degrees or below
# ~0.06 degrees of field of view (a typo, a unit mix-up, an uninitialised field).
FOCAL_RANGE = (1e-2, 1e3)


def _check_plausible(k: np.ndarray, hw: tuple[int, int]) -> None:
    size = max(hw)
    low, high = FOCAL_RANGE[0] * size, FOCAL_RANGE[1] * size
    for name, f in (("fx", k[0, 0]), ("fy", k[1, 1])):
        if not low <= f <= high:
            raise ConversionError(f"camera_info {name} {f:.6g} is not a plausible focal length for a {hw[1]}x{hw[0]} "
                                  f"image (expected {low:g}..{high:g} pixels)")
    for name, c, extent in (("cx", k[0, 2], hw[1]), ("cy", k[1, 2], hw[0])):
        if not -extent <= c <= 2 * extent:
            raise ConversionError(f"camera_info {name} {c:.6g} is far outside the {hw[1]}x{hw[0]} image")
    if not np.allclose(k[2], [0.0, 0.0, 1.0], atol=1e-6):
        raise ConversionError(f"camera_info K's last row must be 0 0 1, got {k[2].tolist()}")


def _pinhole(values: Any, name: str, size: int) -> np.ndarray:
    k = np.asarray(values, dtype=np.float64)
    if k.size != size:
        raise ConversionError(f"camera_info.{name} must have {size} values, got {k.size}")
    k = k.reshape(3, 3).copy()
    if not np.isfinite(k).all() or not k.any():
        raise ConversionError(f"camera_info.{name} must be finite and not all zero (uncalibrated), "
                              f"got {k.ravel().tolist()}")
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        raise ConversionError(f"camera_info.{name} needs positive focal lengths, got fx={k[0, 0]} fy={k[1, 1]}")
    return k


def k_to_camera_info(K: np.ndarray, hw: tuple[int, int], header: Any = None, frame_id: str | None = None) -> Any:
    """3x3 K and (height, width) -> CameraInfo of an ideal camera: plumb_bob, zero D, R = I, P = [K | 0]."""
    from sensor_msgs.msg import CameraInfo

    k = np.asarray(K, dtype=np.float64)
    if k.shape != (3, 3) or not np.isfinite(k).all():
        raise ConversionError(f"K must be a finite 3x3 matrix, got shape {k.shape}")
    height, width = (int(v) for v in hw)
    if height <= 0 or width <= 0:
        raise ConversionError(f"image size must be positive, got {tuple(hw)}")
    msg = CameraInfo()
    msg.header = _header(header, frame_id)
    msg.height, msg.width = height, width
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = k.reshape(-1).copy()
    msg.r = np.eye(3).reshape(-1)
    msg.p = np.hstack([k, np.zeros((3, 1))]).reshape(-1)
    return msg
