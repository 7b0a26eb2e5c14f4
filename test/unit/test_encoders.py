"""Sensor encoders: hand-computed projections, rasters, HHA codes and the FrameEncoder contract."""
import math

import numpy as np
import pytest

from charm_core.encoders import (IMAGENET_MEAN, IMAGENET_STD, FrameEncoder, Letterbox, SensorGeometry, depth_to_hha,
                                 encode_rgb, encode_unit, events_to_frame, frame_to_network, lidar_to_raster,
                                 project_points, scale_intrinsics)
from charm_core.encoders.codes import angle_code, depth_code, height_code, intensity_code

K = np.array([[100.0, 0.0, 50.0], [0.0, 100.0, 40.0], [0.0, 0.0, 1.0]])
# REP-103 LiDAR frame (x fwd, y left, z up) -> camera optical frame (x right, y down, z fwd), same origin
T_OPTICAL = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
RIG = SensorGeometry(camera_height=1.5, camera_pitch=0.0, T_cam_lidar=T_OPTICAL)


def test_project_points_hand_computed():
    pts = np.array([[1.0, 0.5, 2.0], [0.0, 0.0, 5.0], [-2.0, 1.0, 4.0], [1.0, 1.0, -1.0]])
    u, v, z = project_points(pts, K)
    # u = 100 * x / z + 50, v = 100 * y / z + 40
    np.testing.assert_allclose(u[:3], [100.0, 50.0, 0.0])
    np.testing.assert_allclose(v[:3], [65.0, 40.0, 65.0])
    np.testing.assert_allclose(z, [2.0, 5.0, 4.0, -1.0])
    assert np.isnan(u[3]) and np.isnan(v[3]), "points behind the camera have no pixel"


def test_code_scalings_hand_computed():
    # depth: 1 + round(254 * log(128 / z) / log(256)); z = 5: log(25.6) / log(256) = 0.58476 -> 1 + 149 = 150
    assert depth_code(np.array([5.0, 0.5, 0.1, 128.0, 1000.0])).tolist() == [150, 255, 255, 1, 1]
    # height: 1 + round((h + 1) / 0.1): ground -> 11, 2 m -> 31, clipped at -1 m and 24.4 m
    assert height_code(np.array([0.0, 2.0, -5.0, 100.0])).tolist() == [11, 31, 1, 255]
    assert angle_code(np.array([0.0, 90.0, 180.0])).tolist() == [1, 128, 255]
    assert intensity_code(np.array([0.0, 0.5, 1.0, 7.0])).tolist() == [1, 128, 255, 255]


def test_lidar_raster_lands_on_the_projected_pixel():
    pts = np.array([[10.0, 0.0, 0.0, 0.5],     # straight ahead -> principal point (50, 40)
                    [10.0, 1.0, 0.0, 0.5],     # 1 m left -> x_cam = -1 -> u = 100 * -0.1 + 50 = 40
                    [10.0, 0.0, 1.0, 0.5]])    # 1 m up -> y_cam = -1 -> v = 40 - 10 = 30
    r = lidar_to_raster(pts, K, (80, 100), RIG)
    assert r[40, 50, 0] == depth_code(np.array([10.0]))[0]
    assert r[40, 40].all() and r[30, 50].all()
    assert np.count_nonzero(r.any(axis=2)) == 3, "one pixel per point, zero elsewhere"
    # height channel: the camera is 1.5 m up, the point 1 m above the optical axis -> 2.5 m
    assert r[30, 50, 2] == height_code(np.array([2.5]))[0]


def test_lidar_raster_nearest_point_wins_in_any_order():
    far = [20.0, 0.0, 0.0, 0.1]
    near = [5.0, 0.0, 0.0, 0.9]
    middle = [9.0, 0.0, 0.0, 0.4]
    for order in ([far, near, middle], [near, middle, far], [middle, far, near]):
        r = lidar_to_raster(np.array(order), K, (80, 100), RIG)
        assert r[40, 50, 0] == depth_code(np.array([5.0]))[0]
        assert r[40, 50, 1] == intensity_code(np.array([0.9]))[0]


def test_lidar_raster_equal_depth_on_one_pixel_keeps_the_first_point():
    first, second = [7.0, 0.0, 0.0, 0.2], [7.0, 0.0, 0.0, 0.8]
    near_first = lidar_to_raster(np.array([first, second]), K, (80, 100), RIG)[40, 50, 1]
    near_second = lidar_to_raster(np.array([second, first]), K, (80, 100), RIG)[40, 50, 1]
    assert near_first == intensity_code(np.array([0.2]))[0]
    assert near_second == intensity_code(np.array([0.8]))[0]


def test_lidar_raster_ignores_nan_behind_and_outside_points():
    pts = np.array([[np.nan, 0.0, 0.0, 0.5], [-5.0, 0.0, 0.0, 0.5], [1.0, 5.0, 0.0, 0.5], [np.inf, 0.0, 0.0, 0.5],
                    [5.0, -np.inf, 0.0, 0.5], [5.0, 0.0, 0.0, np.nan]])
    r = lidar_to_raster(pts, K, (80, 100), RIG)
    assert np.count_nonzero(r.any(axis=2)) == 1          # only the last point (its NaN intensity -> code 1)
    assert r[40, 50, 1] == 1
    assert lidar_to_raster(np.zeros((0, 4)), K, (8, 8), RIG).shape == (8, 8, 3)


def test_lidar_raw_intensity_and_xyz_only_clouds():
    raw = lidar_to_raster(np.array([[10.0, 0.0, 0.0, 255.0], [10.0, 1.0, 0.0, 51.0]]), K, (80, 100), RIG)
    assert raw[40, 50, 1] == 255 and raw[40, 40, 1] == intensity_code(np.array([0.2]))[0]
    xyz = lidar_to_raster(np.array([[10.0, 0.0, 0.0]]), K, (80, 100), RIG)
    assert xyz[40, 50, 1] == 1 and xyz[40, 50, 0] > 0
    with pytest.raises(ValueError, match="Nx3 or Nx4"):
        lidar_to_raster(np.zeros((5, 2)), K, (8, 8), RIG)


def _ground_depth(hw, K, height, pitch):
    """Exact depth of a flat ground plane seen by a camera `height` above it, pitched down by `pitch`."""
    h, w = hw
    v, u = np.mgrid[0:h, 0:w].astype(float)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1)
    down = -SensorGeometry(camera_height=height, camera_pitch=pitch).up_in_camera()
    along = rays @ down            # distance toward the ground per unit depth
    with np.errstate(divide="ignore"):
        return np.where(along > 1e-3, height / along, 0.0)


@pytest.mark.parametrize("pitch", [0.0, 0.15])
def test_hha_of_flat_ground_is_height_zero_and_normal_up(pitch):
    geo = SensorGeometry(camera_height=1.5, camera_pitch=pitch)
    depth = _ground_depth((80, 100), K, 1.5, pitch)
    hha = depth_to_hha(depth, K, geo)
    interior = np.zeros(depth.shape, bool)
    interior[55:75, 10:90] = True                       # well below the horizon, away from borders
    assert np.all(np.abs(hha[interior, 1].astype(int) - 11) <= 1), "ground height ~0 m -> code 11"
    assert np.all(hha[interior, 2] <= 4), "normal ~ up -> angle ~0 deg -> code ~1"
    np.testing.assert_array_equal(hha[interior, 0], depth_code(depth[interior]))


def test_hha_of_a_wall_facing_the_camera():
    depth = np.full((60, 60), 5.0)
    hha = depth_to_hha(depth, K, SensorGeometry(camera_height=1.5))
    assert np.all(hha[10:50, 10:50, 0] == 150)               # hand-computed above
    assert np.all(np.abs(hha[10:50, 10:50, 2].astype(int) - 128) <= 1), "wall: 90 deg to up"
    # height at row 40 (optical axis row) is the camera height: code 1 + round(2.5 / 0.1) = 26
    assert hha[40, 30, 1] == 26


def test_invalid_depth_is_encoded_as_invalid_not_far():
    depth = np.full((40, 40), 8.0)
    depth[5, 5], depth[10, 10], depth[15, 15], depth[20, 20], depth[25, 25] = 0.0, np.nan, np.inf, -np.inf, -3.0
    hha = depth_to_hha(depth, K, RIG)
    for r in (5, 10, 15, 20, 25):
        assert hha[r, r].tolist() == [0, 0, 0]
    valid = np.isfinite(depth) & (depth > 0)
    assert np.all(hha[valid] >= 1), "every valid pixel has non-zero codes in all channels"
    far = depth_to_hha(np.full((8, 8), 1e6), K, RIG)
    assert np.all(far[..., 0] == 1), "very far is the smallest valid code, never 0"


def test_depth_to_hha_rejects_bad_input():
    with pytest.raises(ValueError, match="HxW"):
        depth_to_hha(np.zeros((4, 4, 3)), K, RIG)
    with pytest.raises(ValueError, match="3x3"):
        depth_to_hha(np.zeros((4, 4)), np.eye(2), RIG)


def test_letterbox_keeps_intrinsics_consistent():
    box = Letterbox.fit((480, 640), (256, 256))
    assert box.scale == pytest.approx(0.4) and box.content_hw == (192, 256)
    img = np.full((480, 640, 3), 200, np.uint8)
    out = box.image(img)
    assert out.shape == (256, 256, 3) and np.all(out[:192] == 200) and np.all(out[192:] == 0)
    K_src = np.array([[500.0, 0.0, 319.5], [0.0, 500.0, 239.5], [0.0, 0.0, 1.0]])
    K_dst = box.intrinsics(K_src)
    pts = np.array([[1.0, -0.5, 4.0], [0.0, 0.0, 2.0], [-2.0, 1.0, 10.0]])
    u0, v0, _ = project_points(pts, K_src)
    u1, v1, _ = project_points(pts, K_dst)
    np.testing.assert_allclose(u1, (u0 + 0.5) * 0.4 - 0.5)   # pixel-centre convention
    np.testing.assert_allclose(v1, (v0 + 0.5) * 0.4 - 0.5)
    # the image centre stays the image centre of the content
    np.testing.assert_allclose(K_dst[:2, 2], [127.5, 95.5])
    assert box.crop(out).shape == (192, 256, 3)
    labels = box.image(np.arange(480 * 640, dtype=np.int32).reshape(480, 640) % 7, nearest=True)
    assert set(np.unique(labels[:192])) <= set(range(7)), "nearest never blends values"


def test_scale_intrinsics_roundtrip():
    K2 = scale_intrinsics(K, (80, 100), (160, 200))
    np.testing.assert_allclose(scale_intrinsics(K2, (160, 200), (80, 100)), K)


def test_encode_rgb_and_unit():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = 255
    x = encode_rgb(rgb)
    assert x.shape == (3, 2, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0], (1 - IMAGENET_MEAN) / IMAGENET_STD, rtol=1e-6)
    np.testing.assert_allclose(x[:, 1, 1], -IMAGENET_MEAN / IMAGENET_STD, rtol=1e-6)
    gray = np.array([[0, 51], [255, 102]], np.uint8)
    u = encode_unit(gray)
    assert u.shape == (3, 2, 2) and np.all(u[0] == u[2])
    np.testing.assert_allclose(u[0], [[0.0, 0.2], [1.0, 0.4]], rtol=1e-6)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = 255
    assert encode_unit(rgba).max() == 0.0, "alpha is dropped"
    with pytest.raises(ValueError, match="uint8"):
        encode_unit(np.zeros((2, 2), np.uint16))
    with pytest.raises(ValueError, match="HxWx3"):
        encode_rgb(np.zeros((2, 2), np.uint8))


def test_network_inputs_are_channels_last_views_whatever_the_input_layout():
    """3xHxW views of HxWx3 memory (the CPU model's layout, so the predictor copies nothing); a strided
    input image (flipped, cropped, transposed) encodes like its contiguous copy."""
    img = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    for encode in (encode_rgb, encode_unit):
        x = encode(img)
        assert x.shape == (3, 6, 5) and x.transpose(1, 2, 0).flags.c_contiguous
        for view in (img[::-1], img[:, 1:], img.transpose(1, 0, 2)):
            assert np.array_equal(encode(view), encode(np.ascontiguousarray(view)))
    np.testing.assert_allclose(encode_rgb(img)[:, 2, 3], (img[2, 3] / 255 - IMAGENET_MEAN) / IMAGENET_STD, rtol=1e-6)


def test_frame_to_network_uses_imagenet_for_rgb_only():
    img = np.full((4, 4, 3), 255, np.uint8)
    out = frame_to_network({"rgb": img, "lidar": img})
    assert out["lidar"].max() == 1.0 and out["rgb"].max() > 2.0
    with pytest.raises(ValueError, match="unknown modalities"):
        frame_to_network({"sonar": img})


def test_events_to_frame():
    pos = np.array([[0, 1, 5]])
    neg = np.array([[0, 2, 0]])
    f = events_to_frame(pos, neg)
    assert f.dtype == np.uint8 and f.shape == (1, 3, 3)
    assert f[0, 0].tolist() == [0, 0, 0], "no events -> zero"
    assert f[0, 1].tolist() == [64, 128, 48]
    assert f[0, 2].tolist() == [255, 0, 80]
    with pytest.raises(ValueError, match="non-negative"):
        events_to_frame(-pos, neg)
    with pytest.raises(ValueError, match="one shape"):
        events_to_frame(pos, neg[:, :2])


def test_frame_encoder_returns_only_given_modalities_and_pads():
    enc = FrameEncoder((64, 64), RIG)
    K_img = np.array([[60.0, 0.0, 63.5], [0.0, 60.0, 47.5], [0.0, 0.0, 1.0]])
    rgb = np.full((96, 128, 3), 90, np.uint8)
    out = enc.encode(K=K_img, image_hw=(96, 128), rgb=rgb)
    assert list(out) == ["rgb"] and out["rgb"].shape == (64, 64, 3)
    assert np.all(out["rgb"][48:] == 0) and np.all(out["rgb"][:48] == 90), "content 48x64 at the top-left"
    lidar = np.array([[10.0, 0.0, 0.0, 0.5], [10.0, -100.0, -20.0, 0.5]])   # second point outside the image
    out = enc.encode(K=K_img, image_hw=(96, 128), lidar=lidar)
    assert np.count_nonzero(out["lidar"].any(axis=2)) == 1 and np.all(out["lidar"][48:] == 0)
    event = np.zeros((24, 32), np.uint8)
    event[0, 0] = 64
    out = enc.encode(K=K_img, image_hw=(96, 128), event=event)
    assert out["event"].shape == (64, 64, 3)
    assert np.all(out["event"][:2, :2, 0] == 64) and out["event"][2:, 2:].max() == 0, "nearest, 2x2 block"


def test_frame_encoder_depth_and_lidar_agree_on_a_wall():
    """A wall 10 m ahead: the HHA depth code from a half-resolution depth image and the LiDAR
    depth code of a point on the wall must be the same number (one scale for both sensors)."""
    enc = FrameEncoder((64, 64), RIG)
    K_img = np.array([[64.0, 0.0, 63.5], [0.0, 64.0, 63.5], [0.0, 0.0, 1.0]])
    depth = np.full((64, 64), 10.0, np.float32)                # half resolution, same field of view
    # network K: f = 32, c = 31.5; a point 0.15625 m right of and below the axis at 10 m lands exactly on
    # the centre of pixel (32, 32), where the depth image sees the same wall point
    point = np.array([[10.0, -0.15625, -0.15625, 0.3]])
    out = enc.encode(K=K_img, image_hw=(128, 128), depth=depth, lidar=point)
    hit = np.argwhere(out["lidar"].any(axis=2))
    assert hit.tolist() == [[32, 32]]
    r, c = hit[0]
    assert out["lidar"][r, c, 0] == out["depth"][r, c, 0] == depth_code(np.array([10.0]))[0]
    assert out["lidar"][r, c, 2] == out["depth"][r, c, 1], "same height code"


@pytest.mark.parametrize("scale", [2, 4])
def test_frame_encoder_hha_does_not_depend_on_the_depth_camera_resolution(scale):
    """Noisy flat ground (1% depth noise) seen by a camera of network size and by one `scale` times
    finer: the network must see the same surface normals from both. Normals computed at the camera's
    own resolution would span `scale` times less ground and come out several angle codes noisier."""
    geo = SensorGeometry(camera_height=1.5)
    rng = np.random.default_rng(7)
    enc = FrameEncoder((80, 100), geo)

    def ground_angle_codes(hw):
        K_cam = scale_intrinsics(K, (80, 100), hw)
        depth = _ground_depth(hw, K_cam, 1.5, 0.0) * (1 + 0.01 * rng.standard_normal(hw))
        hha = enc.encode(K=K, image_hw=(80, 100), depth=depth, depth_K=K_cam)["depth"]
        return hha[55:75, 10:90, 2]                    # ground well below the horizon, away from borders

    network_size = np.percentile(ground_angle_codes((80, 100)), 90)
    finer = np.percentile(ground_angle_codes((80 * scale, 100 * scale)), 90)
    assert network_size <= 4, "ground normal ~ up -> angle code ~1"
    assert finer <= network_size + 1


def test_frame_encoder_rejects_bad_inputs():
    enc = FrameEncoder((32, 32))
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        enc.encode(K=K, image_hw=(80, 100), rgb=np.zeros((80, 100), np.uint8))
    with pytest.raises(ValueError, match="3x3"):
        enc.encode(K=np.eye(4), image_hw=(80, 100))
    with pytest.raises(ValueError, match="positive"):
        FrameEncoder((0, 32))


def test_geometry_compares_by_value():
    assert SensorGeometry(1.5, 0.1, T_OPTICAL) == SensorGeometry(1.5, 0.1, T_OPTICAL.copy())
    assert SensorGeometry(1.5, 0.1, T_OPTICAL) != SensorGeometry(1.5, 0.1)
    assert len({SensorGeometry(), SensorGeometry()}) == 1


def test_geometry_validates_extrinsics():
    with pytest.raises(ValueError, match="4x4"):
        SensorGeometry(T_cam_lidar=np.eye(3))
    assert math.isclose(SensorGeometry(camera_pitch=math.pi / 2).up_in_camera()[2], -1.0)
