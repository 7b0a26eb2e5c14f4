"""Message conversions against hand-made messages: every encoding, padding, byte order, cloud layouts, bad input."""
from __future__ import annotations

import array
import struct
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField, RegionOfInterest
from std_msgs.msg import Header

from charm_ros.msgs.camera_info import camera_info_summary, camera_info_to_k, k_to_camera_info
from charm_ros.msgs.fields import ConversionError, stamp_to_ns, stamp_to_sec
from charm_ros.msgs.images import image_to_depth_m, image_to_numpy, image_to_rgb, numpy_to_image
from charm_ros.msgs.pointclouds import pointcloud2_to_xyzi, xyzi_to_pointcloud2

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
BAG = {name: TYPESTORE.types[f"{pkg}/msg/{name}"] for pkg, name in (
    ("sensor_msgs", "Image"), ("sensor_msgs", "PointCloud2"), ("sensor_msgs", "PointField"),
    ("sensor_msgs", "CameraInfo"), ("std_msgs", "Header"), ("builtin_interfaces", "Time"))}
FLAVOURS = ("rclpy", "rosbags")
NATIVE_BIG = sys.byteorder == "big"

# encoding -> (dtype, channels)
ENCODINGS = {
    "rgb8": ("u1", 3), "bgr8": ("u1", 3), "rgba8": ("u1", 4), "bgra8": ("u1", 4), "mono8": ("u1", 1),
    "mono16": ("u2", 1), "rgb16": ("u2", 3), "bgra16": ("u2", 4), "yuv422": ("u1", 2),
    "8UC1": ("u1", 1), "8UC3": ("u1", 3), "8UC4": ("u1", 4), "8SC1": ("i1", 1), "16UC1": ("u2", 1),
    "16SC1": ("i2", 1), "32SC2": ("i4", 2), "32FC1": ("f4", 1), "64FC1": ("f8", 1), "32FC3": ("f4", 3),
}


def header(flavour: str, sec=12, nanosec=500_000_000, frame_id="cam"):
    if flavour == "rclpy":
        return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)
    return BAG["Header"](stamp=BAG["Time"](sec=sec, nanosec=nanosec), frame_id=frame_id)


def image_msg(raw: bytes, height, width, encoding, step, big=False, flavour="rclpy"):
    """An Image holding exactly `raw` as its data, the way a publisher or a bag delivers it."""
    if flavour == "rclpy":
        return Image(header=header(flavour), height=height, width=width, encoding=encoding, is_bigendian=int(big),
                     step=step, data=array.array("B", raw))
    return BAG["Image"](header=header(flavour), height=height, width=width, encoding=encoding,
                        is_bigendian=int(big), step=step, data=np.frombuffer(raw, np.uint8).copy())


def pack_image(values: np.ndarray, encoding: str, pad=0, big=False, flavour="rclpy"):
    """Rows of `values` in the given byte order, each followed by `pad` garbage bytes."""
    height, width = values.shape[:2]
    rows = values.astype(values.dtype.newbyteorder(">" if big else "<")).reshape(height, -1).view(np.uint8)
    padded = np.full((height, rows.shape[1] + pad), 0xAB, np.uint8)
    padded[:, :rows.shape[1]] = rows
    return image_msg(padded.tobytes(), height, width, encoding, rows.shape[1] + pad, big, flavour)


def random_image(encoding, height=5, width=7, seed=0):
    dtype, channels = ENCODINGS[encoding]
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        values = rng.normal(0, 100, shape).astype(dtype)
        values.flat[::5] = np.nan
        return values
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


# ---------------------------------------------------------------- stamps

@pytest.mark.parametrize("flavour", FLAVOURS)
def test_stamp_to_sec(flavour):
    assert stamp_to_sec(header(flavour, 1_700_000_000, 250_000_000).stamp) == pytest.approx(1_700_000_000.25, abs=1e-6)
    assert stamp_to_sec(header(flavour, 3, 1).stamp) == pytest.approx(3.000000001, abs=1e-12)
    # exact integer ns: two stamps 1 ns apart stay distinct keys even where float seconds cannot tell them apart
    assert stamp_to_ns(header(flavour, 1_700_000_000, 250_000_001).stamp) == 1_700_000_000_250_000_001
    assert stamp_to_ns(header(flavour, 1_700_000_000, 250_000_001).stamp) != \
        stamp_to_ns(header(flavour, 1_700_000_000, 250_000_002).stamp)


def test_stamp_to_sec_rejects_bad_stamps():
    with pytest.raises(ConversionError, match="sec and nanosec"):
        stamp_to_sec(object())
    with pytest.raises(ConversionError, match="nanosec"):
        stamp_to_sec(BAG["Time"](sec=1, nanosec=1_000_000_000))
    with pytest.raises(ConversionError, match="nanosec"):
        stamp_to_ns(BAG["Time"](sec=1, nanosec=1_000_000_000))


# ---------------------------------------------------------------- Image -> numpy

@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("big", [False, True], ids=["little", "big"])
@pytest.mark.parametrize("pad", [0, 3, 8])
@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_image_to_numpy_every_encoding_padding_and_byte_order(encoding, pad, big, flavour):
    values = random_image(encoding)
    msg = pack_image(values, encoding, pad=pad, big=big, flavour=flavour)
    out = image_to_numpy(msg)
    assert out.shape == values.shape and out.dtype == values.dtype and out.dtype.isnative
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, values)
    assert not np.shares_memory(out, np.asarray(msg.data)), "must not alias msg.data"
    out[...] = 0
    np.testing.assert_array_equal(image_to_numpy(msg), values)


def test_image_to_numpy_hand_computed_bytes():
    # mono16, 1x2: bytes 01 02 03 04
    raw = bytes([1, 2, 3, 4])
    assert image_to_numpy(image_msg(raw, 1, 2, "mono16", 4, big=True)).tolist() == [[0x0102, 0x0304]]
    assert image_to_numpy(image_msg(raw, 1, 2, "mono16", 4, big=False)).tolist() == [[0x0201, 0x0403]]
    # rgb8, 2x1 with one padding byte per row (and trailing bytes beyond step*height)
    raw = bytes([1, 2, 3, 99, 4, 5, 6, 99, 77])
    assert image_to_numpy(image_msg(raw, 2, 1, "rgb8", 4)).tolist() == [[[1, 2, 3]], [[4, 5, 6]]]
    # 32FC1, little-endian 1.5 and NaN
    raw = struct.pack("<ff", 1.5, float("nan"))
    out = image_to_numpy(image_msg(raw, 1, 2, "32FC1", 8))
    assert out[0, 0] == 1.5 and np.isnan(out[0, 1])


# ---------------------------------------------------------------- Image -> RGB / depth

@pytest.mark.parametrize("flavour", FLAVOURS)
def test_image_to_rgb_channel_orders(flavour):
    px = np.array([[[10, 20, 30, 40]]], np.uint8)
    cases = {
        "rgb8": (px[..., :3], [10, 20, 30]), "bgr8": (px[..., :3], [30, 20, 10]), "8UC3": (px[..., :3], [30, 20, 10]),
        "rgba8": (px, [10, 20, 30]), "bgra8": (px, [30, 20, 10]), "8UC4": (px, [30, 20, 10]),
        "mono8": (px[..., 0], [10, 10, 10]), "8UC1": (px[..., 0], [10, 10, 10]),
    }
    for encoding, (values, expected) in cases.items():
        out = image_to_rgb(pack_image(values, encoding, pad=1, flavour=flavour))
        assert out.shape == (1, 1, 3) and out.dtype == np.uint8 and out.flags.c_contiguous, encoding
        assert out[0, 0].tolist() == expected, encoding


@pytest.mark.parametrize("big", [False, True], ids=["little", "big"])
def test_image_to_rgb_16_bit_keeps_high_byte(big):
    assert image_to_rgb(pack_image(np.array([[0x12FF]], np.uint16), "mono16", big=big))[0, 0].tolist() == [0x12] * 3
    bgr = np.array([[[0x1000, 0x2000, 0xFF00]]], np.uint16)
    assert image_to_rgb(pack_image(bgr, "bgr16", pad=2, big=big))[0, 0].tolist() == [0xFF, 0x20, 0x10]


@pytest.mark.parametrize("encoding, code", [("yuv422", "COLOR_YUV2RGB_UYVY"), ("yuv422_yuy2", "COLOR_YUV2RGB_YUYV")])
def test_image_to_rgb_packed_yuv_matches_opencv(encoding, code):
    cv2 = pytest.importorskip("cv2")
    packed = np.random.default_rng(1).integers(16, 240, (6, 8, 2), dtype=np.uint8)
    expected = cv2.cvtColor(packed, getattr(cv2, code))
    out = image_to_rgb(pack_image(packed, encoding, pad=4))
    assert out.shape == (6, 8, 3)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 2


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """What a sensor with this colour filter records of an RGB scene: one channel per pixel, laid out
    by the pattern's top-left 2x2 block (rggb: R at (0, 0), G at (0, 1) and (1, 0), B at (1, 1))."""
    out = np.empty(rgb.shape[:2], rgb.dtype)
    for k, colour in enumerate(pattern):
        dy, dx = divmod(k, 2)
        out[dy::2, dx::2] = rgb[dy::2, dx::2, "rgb".index(colour)]
    return out


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_image_to_rgb_demosaics_every_bayer_pattern(pattern, flavour):
    """A smooth colour scene mosaiced with each pattern comes back as that scene (away from the border),
    for 8- and 16-bit mosaics; a swapped pattern would swap red and blue or mix in green."""
    yy, xx = np.mgrid[0:24, 0:32]
    scene = np.stack([40 + 4 * xx, 200 - 3 * yy, 90 + 2 * xx + yy], axis=2).astype(np.uint8)
    got8 = image_to_rgb(pack_image(mosaic(scene, pattern), f"bayer_{pattern}8", pad=3, flavour=flavour))
    got16 = image_to_rgb(pack_image(mosaic(scene, pattern).astype(np.uint16) * 257, f"bayer_{pattern}16",
                                    big=True, flavour=flavour))
    for got in (got8, got16):
        assert got.shape == (24, 32, 3) and got.dtype == np.uint8
        assert np.abs(got[2:-2, 2:-2].astype(int) - scene[2:-2, 2:-2]).max() <= 2
    assert image_to_numpy(pack_image(mosaic(scene, pattern), f"bayer_{pattern}8")).shape == (24, 32), \
        "passthrough keeps the raw mosaic, as cv_bridge does"


def test_image_to_rgb_rejects_non_colour_encodings():
    for encoding, values in (("32FC1", np.zeros((2, 2), np.float32)), ("16UC1", np.zeros((2, 2), np.uint16))):
        with pytest.raises(ConversionError, match="as RGB"):
            image_to_rgb(pack_image(values, encoding))


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("big", [False, True], ids=["little", "big"])
def test_image_to_depth_m_units_and_invalid_values(big, flavour):
    mm = np.array([[0, 1000, 65535, 1]], np.uint16)
    for encoding in ("16UC1", "mono16"):
        out = image_to_depth_m(pack_image(mm, encoding, pad=2, big=big, flavour=flavour))
        assert out.dtype == np.float32 and out.shape == (1, 4)
        np.testing.assert_allclose(out, [[0.0, 1.0, 65.535, 0.001]], rtol=1e-6)
    metres = np.array([[np.nan, -1.0, np.inf, 2.5, 0.0, -np.inf]], np.float32)
    out = image_to_depth_m(pack_image(metres, "32FC1", pad=4, big=big, flavour=flavour))
    assert out.dtype == np.float32 and out.tolist() == [[0.0, 0.0, 0.0, 2.5, 0.0, 0.0]]
    out = image_to_depth_m(pack_image(np.array([[1e300, 3.25, np.nan]]), "64FC1", big=big, flavour=flavour))
    assert out.dtype == np.float32 and out.tolist() == [[0.0, 3.25, 0.0]]


def test_image_to_depth_m_rejects_colour():
    with pytest.raises(ConversionError, match="as depth"):
        image_to_depth_m(pack_image(np.zeros((2, 2, 3), np.uint8), "rgb8"))


# ---------------------------------------------------------------- bad images

@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("fields, match", [
    (dict(encoding="jpeg"), "unknown image encoding 'jpeg'"),
    (dict(encoding=""), "non-empty"),
    (dict(encoding="nv21"), "unsupported image encoding 'nv21'"),
    (dict(encoding="64FC0"), "unknown image encoding"),
    (dict(height=0), "size must be positive"),
    (dict(width=0), "size must be positive"),
    (dict(step=5), r"step 5 is smaller than width\*bytes_per_pixel = 2\*3"),
    (dict(data=bytes(11)), r"has 11 bytes, expected step\*height = 6\*2 = 12"),
    (dict(data=b""), "has 0 bytes"),
])
def test_bad_images_raise_a_clear_error(fields, match, flavour):
    spec = dict(encoding="rgb8", height=2, width=2, step=6, data=bytes(12))
    spec.update(fields)
    msg = image_msg(spec["data"], spec["height"], spec["width"], spec["encoding"], spec["step"], flavour=flavour)
    for convert in (image_to_numpy, image_to_rgb, image_to_depth_m):
        with pytest.raises(ConversionError, match=match):
            convert(msg)
    assert issubclass(ConversionError, ValueError)


# ---------------------------------------------------------------- numpy -> Image

@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_numpy_to_image_round_trip_unpadded_native(encoding):
    values = random_image(encoding, height=4, width=3)
    msg = numpy_to_image(values, encoding, header=header("rclpy"))
    dtype, channels = ENCODINGS[encoding]
    assert (msg.height, msg.width, msg.encoding) == (4, 3, encoding)
    assert msg.step == 3 * channels * np.dtype(dtype).itemsize and len(msg.data) == msg.step * 4
    assert msg.is_bigendian == int(NATIVE_BIG)
    np.testing.assert_array_equal(image_to_numpy(msg), values)
    again = deserialize_message(serialize_message(msg), Image)  # what a subscriber receives
    np.testing.assert_array_equal(image_to_numpy(again), values)
    from_bag = TYPESTORE.deserialize_cdr(serialize_message(msg), "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(image_to_numpy(from_bag), values)


def test_numpy_to_image_accepts_views_and_foreign_byte_order_and_copies_header():
    values = np.arange(2 * 6 * 3, dtype=np.uint8).reshape(2, 6, 3)[:, ::2]  # not contiguous
    src = header("rclpy", frame_id="camera")
    msg = numpy_to_image(values, "rgb8", header=src, frame_id="mask_frame")
    np.testing.assert_array_equal(image_to_numpy(msg), values)
    assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == ("mask_frame", 12, 500_000_000)
    assert src.frame_id == "camera" and msg.header is not src
    assert numpy_to_image(values, "rgb8", header=header("rosbags")).header.frame_id == "cam"
    swapped = np.array([[1.0, -2.5]], dtype=">f4")
    np.testing.assert_array_equal(image_to_numpy(numpy_to_image(swapped, "32FC1")), [[1.0, -2.5]])


@pytest.mark.parametrize("values, encoding, match", [
    (np.zeros((2, 2), np.float64), "32FC1", "needs 1 channel"),
    (np.zeros((2, 2, 3), np.uint8), "mono8", "needs 1 channel"),
    (np.zeros((2, 2), np.uint8), "rgb8", "needs 3 channel"),
    (np.zeros((0, 2, 3), np.uint8), "rgb8", "must not be empty"),
    (np.zeros(4, np.uint8), "mono8", "HxW or HxWxC"),
    (np.zeros((2, 2), np.uint8), "nv21", "unsupported"),
])
def test_numpy_to_image_rejects_mismatches(values, encoding, match):
    with pytest.raises(ConversionError, match=match):
        numpy_to_image(values, encoding)


def test_numpy_to_image_is_one_bulk_copy():
    """A per-element copy of a 1080p frame takes seconds in Python; a bulk copy a few milliseconds."""
    frame = np.random.default_rng(0).integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    numpy_to_image(frame[:8], "rgb8")  # import sensor_msgs outside the timing
    start = time.perf_counter()
    msg = numpy_to_image(frame, "rgb8")
    assert time.perf_counter() - start < 0.25
    assert isinstance(msg.data, array.array) and len(msg.data) == frame.size


# ---------------------------------------------------------------- PointCloud2

FMT = {1: "b", 2: "B", 3: "h", 4: "H", 5: "i", 6: "I", 7: "f", 8: "d"}
F32, F64, U8, U16, U32 = PointField.FLOAT32, PointField.FLOAT64, PointField.UINT8, PointField.UINT16, PointField.UINT32


def cloud_msg(points, fields, point_step, height=1, row_pad=0, big=False, flavour="rclpy", is_dense=False):
    """Pack `points` (dicts name -> value or tuple for count > 1) field by field with struct; padding is 0xCD."""
    width = len(points) // height
    order = ">" if big else "<"
    row_step = width * point_step + row_pad
    data = bytearray(b"\xcd" * (row_step * height))
    for i, point in enumerate(points):
        base = (i // width) * row_step + (i % width) * point_step
        for name, offset, datatype, count in fields:
            value = point.get(name, (0,) * count if count > 1 else 0)
            values = value if isinstance(value, tuple) else (value,)
            struct.pack_into(order + FMT[datatype] * count, data, base + offset, *values)
    if flavour == "rclpy":
        pf = [PointField(name=n, offset=o, datatype=d, count=c) for n, o, d, c in fields]
        return PointCloud2(header=header(flavour), height=height, width=width, fields=pf, is_bigendian=big,
                           point_step=point_step, row_step=row_step, data=array.array("B", bytes(data)),
                           is_dense=is_dense)
    pf = [BAG["PointField"](name=n, offset=o, datatype=d, count=c) for n, o, d, c in fields]
    return BAG["PointCloud2"](header=header(flavour), height=height, width=width, fields=pf, is_bigendian=big,
                              point_step=point_step, row_step=row_step, data=np.frombuffer(bytes(data), np.uint8),
                              is_dense=is_dense)


def expected_xyzi(points, intensity="intensity"):
    rows = [(p["x"], p["y"], p["z"], p.get(intensity, 0.0)) for p in points
            if all(np.isfinite(p[k]) for k in "xyz")]
    return np.array(rows, np.float32).reshape(-1, 4)


def some_points(n, seed=0, integer_intensity=False):
    rng = np.random.default_rng(seed)
    return [{"x": float(rng.normal(0, 20)), "y": float(rng.normal(0, 20)), "z": float(rng.normal(0, 2)),
             "intensity": int(rng.integers(0, 255)) if integer_intensity else float(rng.uniform(0, 100)),
             "ring": int(rng.integers(0, 64)), "t": int(rng.integers(0, 2**31)), "normal": (1.0, 2.0, 3.0)}
            for _ in range(n)]


LAYOUTS = {  # name -> (fields (name, offset, datatype, count), point_step)
    "packed_xyzi": ([("x", 0, F32, 1), ("y", 4, F32, 1), ("z", 8, F32, 1), ("intensity", 12, F32, 1)], 16),
    "velodyne": ([("x", 0, F32, 1), ("y", 4, F32, 1), ("z", 8, F32, 1), ("intensity", 16, F32, 1),
                  ("ring", 20, U16, 1)], 32),
    "ouster": ([("x", 0, F32, 1), ("y", 4, F32, 1), ("z", 8, F32, 1), ("intensity", 16, F32, 1),
                ("t", 20, U32, 1), ("ring", 26, U16, 1)], 48),
    "float64_xyz_uint8_intensity": ([("x", 0, F64, 1), ("y", 8, F64, 1), ("z", 16, F64, 1),
                                     ("intensity", 24, U8, 1)], 32),
    "shuffled_uint16_intensity": ([("intensity", 0, U16, 1), ("z", 2, F32, 1), ("x", 6, F32, 1),
                                   ("y", 10, F32, 1)], 15),
    "count3_normal_no_intensity": ([("x", 0, F32, 1), ("y", 4, F32, 1), ("z", 8, F32, 1),
                                    ("normal", 12, F32, 3)], 28),
}


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("big", [False, True], ids=["little", "big"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_pointcloud2_any_layout(layout, big, flavour):
    fields, point_step = LAYOUTS[layout]
    integer = any(n == "intensity" and d in (U8, U16) for n, _, d, _ in fields)
    points = some_points(12, integer_intensity=integer)
    msg = cloud_msg(points, fields, point_step, big=big, flavour=flavour)
    out = pointcloud2_to_xyzi(msg)
    has_intensity = any(n == "intensity" for n, *_ in fields)
    expected = expected_xyzi(points if has_intensity else [{**p, "intensity": 0.0} for p in points])
    assert out.dtype == np.float32 and out.shape == (12, 4)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_pointcloud2_organized_with_row_padding_and_nans(flavour):
    points = some_points(12, seed=3)
    for i in (1, 6, 11):
        points[i]["x" if i != 6 else "z"] = float("nan")
    points[4]["y"] = float("inf")
    points[5]["intensity"] = float("nan")
    fields, point_step = LAYOUTS["velodyne"]
    msg = cloud_msg(points, fields, point_step, height=3, row_pad=7, flavour=flavour)
    assert (msg.height, msg.width, msg.row_step) == (3, 4, 4 * 32 + 7)
    out = pointcloud2_to_xyzi(msg)
    points[5]["intensity"] = 0.0
    np.testing.assert_allclose(out, expected_xyzi(points), rtol=1e-6)  # row-major order kept, 4 dropped
    assert out.shape == (8, 4)


def test_pointcloud2_other_intensity_field_and_all_invalid():
    fields = [("x", 0, F32, 1), ("y", 4, F32, 1), ("z", 8, F32, 1), ("reflectivity", 12, U16, 1)]
    points = [{"x": 1.0, "y": 2.0, "z": 3.0, "reflectivity": 700}]
    out = pointcloud2_to_xyzi(cloud_msg(points, fields, 14), intensity_field="reflectivity")
    assert out.tolist() == [[1.0, 2.0, 3.0, 700.0]]
    assert pointcloud2_to_xyzi(cloud_msg(points, fields, 14)).tolist() == [[1.0, 2.0, 3.0, 0.0]]
    nothing = cloud_msg([{"x": float("nan"), "y": 0.0, "z": 0.0}] * 3, fields, 14)
    assert pointcloud2_to_xyzi(nothing).shape == (0, 4)


def test_pointcloud2_float64_beyond_float32_range_is_dropped_quietly():
    fields = [("x", 0, F64, 1), ("y", 8, F64, 1), ("z", 16, F64, 1), ("intensity", 24, F64, 1)]
    points = [{"x": 1e300, "y": 0.0, "z": 0.0, "intensity": 1.0}, {"x": 1.0, "y": 2.0, "z": 3.0, "intensity": -1e300}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pointcloud2_to_xyzi(cloud_msg(points, fields, 32)).tolist() == [[1.0, 2.0, 3.0, 0.0]]


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("change, match", [
    (dict(width=0), "point cloud is empty"),
    (dict(point_step=0), "point_step must be positive"),
    (dict(row_step=10), r"row_step 10 is smaller than width\*point_step = 2\*16"),
    (dict(data=bytes(31)), "has 31 bytes, expected at least 32"),
    (dict(fields=[("x", 0, F32, 1), ("z", 8, F32, 1)]), r"no field\(s\) \['y'\]"),
    (dict(fields=[("x", 0, F32, 1), ("y", 4, F32, 1), ("z", 14, F32, 1)]), "'z' at offset 14 .* point_step 16"),
    (dict(fields=[("x", 0, F32, 1), ("y", 4, F32, 1), ("z", 8, 9, 1)]), "'z' has unknown datatype 9"),
])
def test_bad_clouds_raise_a_clear_error(change, match, flavour):
    spec = dict(height=1, width=2, point_step=16, row_step=32, data=bytes(32), fields=LAYOUTS["packed_xyzi"][0])
    spec.update(change)
    if flavour == "rclpy":
        fields = [PointField(name=n, offset=o, datatype=d, count=c) for n, o, d, c in spec["fields"]]
        msg = PointCloud2(height=spec["height"], width=spec["width"], fields=fields, point_step=spec["point_step"],
                          row_step=spec["row_step"], data=array.array("B", spec["data"]))
    else:
        fields = [BAG["PointField"](name=n, offset=o, datatype=d, count=c) for n, o, d, c in spec["fields"]]
        msg = BAG["PointCloud2"](header=header(flavour), height=spec["height"], width=spec["width"], fields=fields,
                                 is_bigendian=False, point_step=spec["point_step"], row_step=spec["row_step"],
                                 data=np.frombuffer(spec["data"], np.uint8), is_dense=True)
    with pytest.raises(ConversionError, match=match):
        pointcloud2_to_xyzi(msg)


def test_xyzi_to_pointcloud2_round_trip_and_layout():
    points = np.array([[1.0, 2.0, 3.0, 4.0], [-1.5, 0.25, 8.0, 0.0]], np.float32)
    msg = xyzi_to_pointcloud2(points, header=header("rclpy"), frame_id="lidar")
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == LAYOUTS["packed_xyzi"][0]
    assert (msg.height, msg.width, msg.point_step, msg.row_step, msg.is_dense) == (1, 2, 16, 32, True)
    assert msg.header.frame_id == "lidar" and msg.header.stamp.sec == 12
    np.testing.assert_array_equal(pointcloud2_to_xyzi(msg), points)
    from_bag = TYPESTORE.deserialize_cdr(serialize_message(msg), "sensor_msgs/msg/PointCloud2")
    np.testing.assert_array_equal(pointcloud2_to_xyzi(from_bag), points)
    xyz = xyzi_to_pointcloud2(np.array([[1.0, 2.0, 3.0], [np.nan, 0.0, 0.0]]))
    assert not xyz.is_dense and pointcloud2_to_xyzi(xyz).tolist() == [[1.0, 2.0, 3.0, 0.0]]
    with pytest.raises(ConversionError, match="Nx3 or Nx4"):
        xyzi_to_pointcloud2(np.zeros((3, 5)))


def test_pointcloud2_large_cloud_is_vectorized():
    points = np.random.default_rng(0).normal(0, 10, (200_000, 4)).astype(np.float32)
    msg = xyzi_to_pointcloud2(points)
    start = time.perf_counter()
    out = pointcloud2_to_xyzi(msg)
    assert time.perf_counter() - start < 0.25
    np.testing.assert_array_equal(out, points)


# ---------------------------------------------------------------- CameraInfo

@pytest.mark.parametrize("flavour", FLAVOURS)
def test_camera_info_round_trip(flavour):
    K = np.array([[500.0, 0.0, 320.5], [0.0, 510.0, 240.25], [0.0, 0.0, 1.0]])
    msg = k_to_camera_info(K, (480, 640), header=header("rclpy"), frame_id="camera_optical")
    assert (msg.height, msg.width, msg.distortion_model) == (480, 640, "plumb_bob")
    assert msg.header.frame_id == "camera_optical"
    assert list(msg.d) == [0.0] * 5 and msg.r.tolist() == np.eye(3).ravel().tolist()
    assert msg.p.reshape(3, 4).tolist() == np.hstack([K, np.zeros((3, 1))]).tolist()
    if flavour == "rosbags":
        msg = TYPESTORE.deserialize_cdr(serialize_message(msg), "sensor_msgs/msg/CameraInfo")
    k, hw = camera_info_to_k(msg)
    assert hw == (480, 640) and k.dtype == np.float64 and k.tolist() == K.tolist()


@pytest.mark.parametrize("k, hw, match", [
    (np.zeros(9), (480, 640), "not all zero"),
    (np.r_[np.nan, np.ones(8)], (480, 640), "finite"),
    (np.array([0, 0, 320, 0, 500, 240, 0, 0, 1.0]), (480, 640), "positive focal"),
    (np.array([500, 0, 320, 0, 500, 240, 0, 0, 1.0]), (0, 0), "size must be positive"),
])
def test_camera_info_to_k_rejects_uncalibrated(k, hw, match):
    msg = CameraInfo(height=hw[0], width=hw[1], k=k.astype(np.float64))
    with pytest.raises(ConversionError, match=match):
        camera_info_to_k(msg)


# Hand-computed from REP 104 / image_geometry: a 1280x960 camera with fx = fy = 1000, (cx, cy) = (640, 480).
@pytest.mark.parametrize("binning, roi, hw, fx, fy, cx, cy", [
    ((0, 0), (0, 0, 0, 0), (960, 1280), 1000, 1000, 640, 480),      # 0 = no binning, zero ROI = full image
    ((2, 2), (0, 0, 0, 0), (480, 640), 500, 500, 320, 240),
    ((1, 1), (100, 50, 640, 480), (480, 640), 1000, 1000, 540, 430),
    ((2, 1), (100, 50, 640, 480), (480, 320), 500, 1000, 270, 430),
    ((4, 4), (0, 0, 1280, 960), (240, 320), 250, 250, 160, 120),      # an explicit full ROI is the full image
])
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_camera_info_binning_and_roi_give_the_published_images_intrinsics(flavour, binning, roi, hw, fx, fy, cx, cy):
    msg = CameraInfo(height=960, width=1280, k=[1000.0, 0, 640, 0, 1000, 480, 0, 0, 1],
                     binning_x=binning[0], binning_y=binning[1],
                     roi=RegionOfInterest(x_offset=roi[0], y_offset=roi[1], width=roi[2], height=roi[3]))
    if flavour == "rosbags":
        msg = TYPESTORE.deserialize_cdr(serialize_message(msg), "sensor_msgs/msg/CameraInfo")
    k, got_hw = camera_info_to_k(msg)
    assert got_hw == hw
    np.testing.assert_allclose(k, [[fx, 0, cx], [0, fy, cy], [0, 0, 1]])


def test_camera_info_with_distortion_gives_the_rectified_images_intrinsics():
    """The encoders take undistorted images: for a distorted camera that is image_rect, whose
    intrinsics are P's (camera_calibration's P differs from K); an unset P falls back to K."""
    K = [1000.0, 0, 640, 0, 1000, 480, 0, 0, 1]
    P = [900.0, 0, 650, 0, 0, 905, 470, 0, 0, 0, 1, 0]
    msg = CameraInfo(height=960, width=1280, k=K, p=P, d=[-0.2, 0.05, 0, 0, 0], distortion_model="plumb_bob")
    k, _ = camera_info_to_k(msg)
    np.testing.assert_allclose(k, [[900, 0, 650], [0, 905, 470], [0, 0, 1]])
    assert "rectified" in camera_info_summary(msg) and "plumb_bob" in camera_info_summary(msg)
    msg.p = np.zeros(12)
    np.testing.assert_allclose(camera_info_to_k(msg)[0], np.reshape(K, (3, 3)))
    msg.d, msg.p = np.zeros(5), P
    np.testing.assert_allclose(camera_info_to_k(msg)[0], np.reshape(K, (3, 3))), "no distortion: K, as published"


@pytest.mark.parametrize("binning, roi", [
    ((1, 1), (700, 0, 640, 480)),  # runs past the right edge
    ((1, 1), (0, 500, 640, 480)),  # and past the bottom
    ((1, 1), (10, 10, 0, 0)),      # an offset without a size
    ((1024, 1), (0, 0, 640, 480)),  # binning larger than the ROI
])
def test_camera_info_rejects_an_roi_or_binning_outside_the_image(binning, roi):
    msg = CameraInfo(height=960, width=1280, k=[1000.0, 0, 640, 0, 1000, 480, 0, 0, 1],
                     binning_x=binning[0], binning_y=binning[1],
                     roi=RegionOfInterest(x_offset=roi[0], y_offset=roi[1], width=roi[2], height=roi[3]))
    with pytest.raises(ConversionError, match="roi"):
        camera_info_to_k(msg)


def test_k_to_camera_info_rejects_bad_input():
    with pytest.raises(ConversionError, match="3x3"):
        k_to_camera_info(np.eye(4), (10, 10))
    with pytest.raises(ConversionError, match="positive"):
        k_to_camera_info(np.eye(3), (0, 10))


def test_modules_import_and_work_without_ros():
    """The bag evaluator and training tools use these without a ROS installation."""
    code = textwrap.dedent("""
        import sys
        class NoRos:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("rclpy", "sensor_msgs", "std_msgs", "builtin_interfaces"):
                    raise ImportError("ROS is blocked in this test: " + name)
        sys.meta_path.insert(0, NoRos())
        from types import SimpleNamespace as NS
        from charm_ros.msgs.images import image_to_numpy
        from charm_ros.msgs.pointclouds import pointcloud2_to_xyzi
        from charm_ros.runtime.sync import ModalityConfig, SyncConfig, Synchronizer
        img = NS(height=1, width=2, encoding="mono8", is_bigendian=0, step=3, data=b"\\x01\\x02\\x09")
        assert image_to_numpy(img).tolist() == [[1, 2]]
        f = lambda n, o: NS(name=n, offset=o, datatype=7, count=1)
        cloud = NS(height=1, width=1, fields=[f("x", 0), f("y", 4), f("z", 8)], is_bigendian=False,
                   point_step=12, row_step=12, data=bytes(12))
        assert pointcloud2_to_xyzi(cloud).tolist() == [[0.0, 0.0, 0.0, 0.0]]
        Synchronizer(SyncConfig([ModalityConfig("rgb")]))
        assert not any(m.split(".")[0] in ("rclpy", "sensor_msgs") for m in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
