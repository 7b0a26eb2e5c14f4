"""CompressedImage (image_transport compressed / compressedDepth) through the Image conversions,
as rclpy delivers it live and rosbags reads it from a bag."""
from __future__ import annotations

import array

import cv2
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CompressedImage

from charm_ros.msgs.compressed import is_transport_topic
from charm_ros.msgs.fields import ConversionError
from charm_ros.msgs.images import image_to_depth_m, image_to_numpy, image_to_rgb

BAG_COMPRESSED = get_typestore(Stores.ROS2_KILTED).types["sensor_msgs/msg/CompressedImage"]
RNG = np.random.default_rng(3)
RGB = RNG.integers(0, 256, (6, 9, 3), dtype=np.uint8)


def message(fmt: str, payload: bytes, flavour: str):
    if flavour == "rclpy":
        return CompressedImage(format=fmt, data=array.array("B", payload))
    header = get_typestore(Stores.ROS2_KILTED).types["std_msgs/msg/Header"]
    time = get_typestore(Stores.ROS2_KILTED).types["builtin_interfaces/msg/Time"]
    return BAG_COMPRESSED(header=header(stamp=time(sec=1, nanosec=0), frame_id="cam"), format=fmt,
                          data=np.frombuffer(payload, np.uint8).copy())


def encoded(ext: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def depth_payload(values: np.ndarray, quant_a=0.0, quant_b=0.0, codec: str = "png") -> bytes:
    """compressedDepth: int32 format, float32 depthQuantA, depthQuantB, then a 16-bit PNG or RVL."""
    head = np.array([(0, quant_a, quant_b)], dtype=[("f", "<i4"), ("a", "<f4"), ("b", "<f4")]).tobytes()
    return head + (encoded(".png", values) if codec == "png" else rvl_encode(values))


def rvl_encode(values: np.ndarray) -> bytes:
    """uint32 cols, rows, then RVL as the published algorithm (Wilson 2017) and image_transport_plugins
    write it, one value at a time: the independent reference the vectorized decoder is checked against."""
    nibbles: list[int] = []

    def code(value: int) -> None:  # 3 bits per nibble, least significant first; 0x8 = more follows
        while True:
            value, low = value >> 3, value & 7
            nibbles.append(low | (8 if value else 0))
            if not value:
                return

    flat, i, previous = [int(v) for v in values.ravel()], 0, 0
    while i < len(flat):
        j = i
        while j < len(flat) and flat[j] == 0:
            j += 1
        k = j
        while k < len(flat) and flat[k] != 0:
            k += 1
        code(j - i)
        code(k - j)
        for v in flat[j:k]:
            delta, previous = v - previous, v
            code((delta << 1) ^ (delta >> 31))  # zigzag: 0, -1, 1, -2... -> 0, 1, 2, 3...
        i = k
    nibbles += [0] * (-len(nibbles) % 8)  # the last word is filled up from the top
    words = [int("".join(f"{n:x}" for n in nibbles[w:w + 8]), 16) for w in range(0, len(nibbles), 8)]
    rows, cols = values.shape
    return np.array([cols, rows], "<u4").tobytes() + np.array(words, "<u4").tobytes()


FLAVOURS = ("rclpy", "rosbags")


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("fmt", ["rgb8; png compressed bgr8", "bgr8; png compressed bgr8", "png"])
def test_png_colour_comes_back_exactly_as_rgb(flavour, fmt):
    # image_transport compresses colour as BGR whatever the original encoding; cv2.imencode takes BGR
    msg = message(fmt, encoded(".png", RGB[..., ::-1]), flavour)
    np.testing.assert_array_equal(image_to_rgb(msg), RGB)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_jpeg_colour_is_close(flavour):
    smooth = np.repeat(np.repeat(np.array([[[200, 40, 10]]], np.uint8), 16, 0), 16, 1)   # red
    msg = message("rgb8; jpeg compressed bgr8", encoded(".jpg", smooth[..., ::-1]), flavour)
    rgb = image_to_rgb(msg)
    assert rgb.shape == (16, 16, 3) and np.abs(rgb.astype(int) - smooth).max() <= 8


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_mono_and_16_bit_pngs(flavour):
    gray = RNG.integers(0, 256, (4, 5), dtype=np.uint8)
    assert image_to_rgb(message("mono8; png compressed mono8", encoded(".png", gray), flavour)).tolist() == \
        np.repeat(gray[..., None], 3, axis=2).tolist()
    mm = np.array([[0, 1000, 65535]], np.uint16)
    msg = message("16UC1; png compressed mono16", encoded(".png", mm), flavour)
    np.testing.assert_allclose(image_to_depth_m(msg), [[0.0, 1.0, 65.535]], rtol=1e-6)
    assert image_to_numpy(msg).dtype == np.uint16


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_compressed_depth_16uc1_is_millimetres(flavour):
    mm = np.array([[0, 500, 1234], [65535, 7, 0]], np.uint16)
    depth = image_to_depth_m(message("16UC1; compressedDepth png", depth_payload(mm), flavour))
    np.testing.assert_allclose(depth, mm.astype(np.float32) / 1000, rtol=1e-6)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_compressed_depth_32fc1_inverts_the_quantization(flavour):
    # image_transport: value = quant_a / depth + quant_b, so depth = quant_a / (value - quant_b); 0 = none
    quant_a, quant_b = 100.0, 10.0
    depth_m = np.array([[1.0, 2.5], [10.0, 0.0]], np.float32)
    values = np.where(depth_m > 0, np.rint(quant_a / np.where(depth_m > 0, depth_m, 1) + quant_b), 0).astype(np.uint16)
    got = image_to_depth_m(message("32FC1; compressedDepth png", depth_payload(values, quant_a, quant_b), flavour))
    expected = np.where(values > 0, quant_a / (values.astype(np.float32) - quant_b), 0.0)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(got, depth_m, rtol=0.02)
    assert got[1, 1] == 0.0


def test_rvl_by_hand():
    """[0, 0, 5, 7, 0]: codes 2 zeros, 2 nonzeros, differences 5 and 2 (zigzag 10 = nibbles A 1, and
    4), 1 zero, 0 nonzeros: nibbles 2 2 A 1 4 1 0 (0), one little-endian word 0x22A14100."""
    payload = bytes(12) + np.array([5, 1], "<u4").tobytes() + bytes([0x00, 0x41, 0xA1, 0x22])
    assert rvl_encode(np.array([[0, 0, 5, 7, 0]], np.uint16)) == payload[12:]
    got = image_to_numpy(message("16UC1; compressedDepth rvl", payload, "rclpy"))
    assert got.dtype == np.uint16 and got.tolist() == [[0, 0, 5, 7, 0]]


def _runs(shape, rng) -> np.ndarray:
    """Runs of random length 0..9 and value 0..9, as image_transport_plugins' own RVL test makes them."""
    flat, i = np.zeros(shape[0] * shape[1], np.uint16), 0
    while i < flat.size:
        length = int(rng.integers(0, 10))
        flat[i:i + length] = rng.integers(0, 10)
        i += length
    return flat.reshape(shape)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("case", ["constant", "all_invalid", "runs", "full_range_with_holes"])
def test_compressed_depth_rvl_16uc1_round_trips(flavour, case):
    rng = np.random.default_rng(11)
    shape = (48, 64)
    mm = {"constant": np.full(shape, 42, np.uint16),
          "all_invalid": np.zeros(shape, np.uint16),
          "runs": _runs(shape, rng),
          "full_range_with_holes": np.where(rng.random(shape) < 0.2, 0,
                                            rng.integers(1, 65536, shape)).astype(np.uint16)}[case]
    mm[0, :3] = [65535, 1, 65535]  # the largest differences both ways
    msg = message("16UC1; compressedDepth rvl", depth_payload(mm, codec="rvl"), flavour)
    np.testing.assert_array_equal(image_to_numpy(msg), mm)
    np.testing.assert_allclose(image_to_depth_m(msg), mm.astype(np.float32) / 1000, rtol=1e-6)


def test_compressed_depth_rvl_32fc1_and_mono16():
    quant_a, quant_b = 100.0, 10.0
    values = np.array([[0, 110, 20], [50, 0, 65535]], np.uint16)
    got = image_to_depth_m(message("32FC1; compressedDepth rvl", depth_payload(values, quant_a, quant_b, "rvl"),
                                   "rosbags"))
    np.testing.assert_allclose(got, np.where(values > 0, quant_a / (values.astype(np.float32) - quant_b), 0.0),
                               rtol=1e-6)
    # a bare "compressedDepth" is PNG, as image_transport_plugins reads it; mono16 is millimetres like 16UC1
    got = image_to_depth_m(message("mono16; compressedDepth", depth_payload(values), "rclpy"))
    np.testing.assert_allclose(got, values.astype(np.float32) / 1000, rtol=1e-6)


RVL_5X1 = np.array([5, 1], "<u4").tobytes()


@pytest.mark.parametrize("fmt, payload, match", [
    ("png", b"", "no data"),
    ("rgb8; jpeg compressed bgr8", b"\xff\xd8 not really a jpeg", "not a decodable"),
    ("16UC1; compressedDepth zstd", b"\0" * 40, "'zstd' is not a compressedDepth format"),
    ("16UC1; compressedDepth rvl", bytes(12) + bytes(8) + bytes(4), "0x0 pixels: malformed"),
    ("16UC1; compressedDepth rvl", bytes(12) + np.array([1 << 15, 1 << 15], "<u4").tobytes() + bytes(4), "malformed"),
    ("16UC1; compressedDepth rvl", bytes(12) + bytes(4), "shorter than its 8-byte size"),
    ("16UC1; compressedDepth rvl", bytes(12) + RVL_5X1 + bytes([0x00, 0x41, 0xA1]), "ends after 0 of 5 pixels"),
    ("16UC1; compressedDepth rvl", bytes(12) + RVL_5X1 + bytes([0xFF] * 8), "ends after 0 of 5 pixels"),
    # 4 zeros + 2 nonzeros: 6 pixels for 5
    ("16UC1; compressedDepth rvl", bytes(12) + RVL_5X1 + bytes([0x00, 0x41, 0xA1, 0x42]), "has 6 pixels"),
    # 5 nonzeros announced, one difference follows
    ("16UC1; compressedDepth rvl", bytes(12) + RVL_5X1 + bytes([0xF7, 0xFF, 0xFF, 0x05]), "ends early"),
    # a 13-nibble code
    ("16UC1; compressedDepth rvl", bytes(12) + RVL_5X1 + bytes([0xFF] * 4 + [0x00, 0x70, 0xFF, 0xFF]),
     "longer than 11 nibbles"),
    ("16UC1; compressedDepth png", b"\0" * 8, "header"),
    ("16UC1; compressedDepth png", b"\0" * 12 + encoded(".png", RGB), "16-bit single channel"),
    ("16SC1; compressedDepth png", depth_payload(np.zeros((2, 2), np.uint16)), "16UC1, mono16 or 32FC1"),
])
def test_bad_compressed_images_raise_a_conversion_error(fmt, payload, match):
    with pytest.raises(ConversionError, match=match):
        image_to_depth_m(message(fmt, payload, "rclpy"))


def test_colour_cannot_be_read_as_depth():
    with pytest.raises(ConversionError, match="as depth"):
        image_to_depth_m(message("rgb8; png compressed bgr8", encoded(".png", RGB), "rosbags"))


def test_transport_topics_by_image_transport_naming():
    assert is_transport_topic("/cam/color/image_raw/compressed")
    assert is_transport_topic("/cam/depth/image_raw/compressedDepth/")
    assert not is_transport_topic("/cam/color/image_raw")
    assert not is_transport_topic("/cam/compressed_images")
