"""The node's ROS-free pipeline: synchronized samples -> encoders -> model -> mask in the camera's frame."""
import numpy as np
import pytest

from charm_core.data.synthetic import World
from charm_core.encoders import Letterbox, scale_intrinsics
from charm_core.inference import Predictor
from charm_ros.runtime.pipeline import FrameSkipped, Pipeline, PipelineConfig, SensorSample
from charm_ros.runtime.sync import Frame


@pytest.fixture(scope="module")
def world_frame():
    return World(seed=11, size_hw=(96, 128)).frame_at(1.0)


@pytest.fixture(scope="module")
def predictor(random_checkpoint):
    return Predictor.from_checkpoint(random_checkpoint, device="cpu")


def frame_of(f, modalities):
    arrays = {"rgb": f.rgb, "depth": f.depth, "event": f.event, "lidar": f.lidar}
    data = {m: SensorSample(arrays[m], 1.0, "cam") for m in modalities}
    return Frame(stamp=1.0, reference=modalities[0], data=data, stamps={m: 1.0 for m in modalities})


def test_mask_is_letterbox_content_sized_with_scaled_intrinsics(world_frame, predictor):
    pipeline = Pipeline(predictor, PipelineConfig(input_size=(64, 64), geometry=world_frame.geometry))
    pipeline.set_camera("rgb", world_frame.K, (96, 128))
    result = pipeline.process(frame_of(world_frame, ("rgb", "depth", "event", "lidar")))
    box = Letterbox.fit((96, 128), (64, 64))
    assert result.labels.shape == box.content_hw == (48, 64)
    assert result.labels.dtype == np.uint8 and result.labels.max() < 25
    assert result.confidence.shape == (48, 64) and 0 < result.confidence.min() <= result.confidence.max() <= 1
    np.testing.assert_allclose(result.K, box.intrinsics(world_frame.K))
    assert result.subset == ("rgb", "depth", "event", "lidar")
    assert result.background.shape == (48, 64, 3)


def test_without_camera_info_images_still_work_but_depth_and_lidar_are_skipped(world_frame, predictor):
    pipeline = Pipeline(predictor, PipelineConfig(input_size=(64, 64)))
    result = pipeline.process(frame_of(world_frame, ("rgb", "lidar")))
    assert result.subset == ("rgb",) and result.K is None
    assert "CameraInfo" in result.skipped["lidar"]
    with pytest.raises(FrameSkipped):
        pipeline.process(frame_of(world_frame, ("depth", "lidar")))


def test_rgb_without_a_usable_camera_info_takes_the_depth_cameras_calibration(world_frame, predictor):
    """An uncalibrated RGB camera (no usable CameraInfo) beside a calibrated half-resolution depth
    camera: the RGB view stays the network image, with the depth K scaled to it; nothing is skipped."""
    pipeline = Pipeline(predictor, PipelineConfig(input_size=(64, 64), geometry=world_frame.geometry))
    depth_K = scale_intrinsics(world_frame.K, (96, 128), (48, 64))
    pipeline.set_camera("depth", depth_K, (48, 64))
    half = frame_of(world_frame, ("rgb", "depth", "lidar"))
    half.data["depth"].array = world_frame.depth[::2, ::2]
    result = pipeline.process(half)
    assert result.subset == ("rgb", "depth", "lidar") and result.skipped == {}
    box = Letterbox.fit((96, 128), (64, 64))
    assert result.labels.shape == box.content_hw
    np.testing.assert_allclose(result.K, box.intrinsics(world_frame.K))
    calibrated = Pipeline(predictor, PipelineConfig(input_size=(64, 64), geometry=world_frame.geometry))
    calibrated.set_camera("rgb", world_frame.K, (96, 128))
    calibrated.set_camera("depth", depth_K, (48, 64))
    np.testing.assert_array_equal(result.labels, calibrated.process(half).labels)
    no_rgb = pipeline.process(frame_of(world_frame, ("event",)))
    assert no_rgb.labels.shape == Letterbox.fit((48, 64), (64, 64)).content_hw, "else the depth view"


def test_min_confidence_marks_no_data(world_frame, predictor):
    pipeline = Pipeline(predictor, PipelineConfig(input_size=(64, 64), min_confidence=1.0))
    pipeline.set_camera("rgb", world_frame.K, (96, 128))
    result = pipeline.process(frame_of(world_frame, ("rgb",)))
    assert (result.labels == 255).all()


def test_same_frame_same_mask(world_frame, predictor):
    pipeline = Pipeline(predictor, PipelineConfig(input_size=(64, 64), geometry=world_frame.geometry))
    pipeline.set_camera("rgb", world_frame.K, (96, 128))
    a = pipeline.process(frame_of(world_frame, ("depth", "lidar")))
    b = pipeline.process(frame_of(world_frame, ("depth", "lidar")))
    np.testing.assert_array_equal(a.labels, b.labels)


def test_a_binned_camera_info_describes_the_published_image(world_frame, predictor):
    """A camera binning 2x2 publishes half-size images with a full-resolution CameraInfo (REP 104):
    its images are accepted, and give the masks of a camera calibrated at the published size."""
    from sensor_msgs.msg import CameraInfo

    from charm_ros.msgs.images import numpy_to_image

    full_K = world_frame.K.copy()
    full_K[:2] *= 2  # image_geometry's binning divides fx, fy, cx, cy by 2
    binned = Pipeline(predictor, PipelineConfig(input_size=(64, 64), geometry=world_frame.geometry))
    binned.accept_camera_info("rgb", CameraInfo(height=192, width=256, k=full_K.ravel(), binning_x=2, binning_y=2))
    image = numpy_to_image(world_frame.rgb, "rgb8")
    image.header.stamp.sec = 1
    sample = binned.accept("rgb", image)
    frame = frame_of(world_frame, ("rgb", "depth", "lidar"))
    frame.data["rgb"] = sample
    direct = Pipeline(predictor, PipelineConfig(input_size=(64, 64), geometry=world_frame.geometry))
    direct.set_camera("rgb", world_frame.K, (96, 128))
    a, b = binned.process(frame), direct.process(frame)
    np.testing.assert_allclose(a.K, b.K, atol=1e-9)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_a_sensor_the_checkpoint_was_not_trained_with_is_refused_at_start(tmp_path):
    """Enabled but unknown to the model: one clear error at start, not a model failure on every frame."""
    import torch

    from charm_core.checkpoint import save_checkpoint
    from charm_core.model import ModelConfig, build_model
    from charm_ros.runtime.node_config import validate
    from charm_ros.runtime.parameters import load_param_file
    from support import ROOT

    torch.manual_seed(0)
    config = ModelConfig(backbone="tiny", modalities=("rgb", "depth"))
    path = tmp_path / "rgb_depth.safetensors"
    save_checkpoint(path, build_model(config).eval(), config, provenance={"input_size": [64, 64]})
    predictor = Predictor.from_checkpoint(path, device="cpu")
    params = load_param_file(ROOT / "config" / "charm.param.yaml")
    with pytest.raises(ValueError, match=r"takes rgb\+depth only, but event, lidar are enabled: set "
                                         r"event.enabled, lidar.enabled to false"):
        Pipeline.for_node(predictor, validate(params).pipeline, validate(params).enabled)
    params.update({"event.enabled": False, "lidar.enabled": False})
    config = validate(params)
    assert Pipeline.for_node(predictor, config.pipeline, config.enabled).config.input_size == (64, 64)


def test_lidar_intensity_field_and_scale_parameters(predictor):
    """auto reads 'intensity' where present; a named field (an Ouster's uint16 reflectivity) must be in the
    cloud, else the cloud is rejected naming the fields it has; a scale maps raw values onto 0..1."""
    from charm_ros.msgs.fields import ConversionError
    from test_conversions import F32, U16, cloud_msg

    points = [{"x": 5.0, "y": 1.0, "z": 0.5, "intensity": 0.25, "reflectivity": 600},
              {"x": 9.0, "y": -2.0, "z": 1.0, "intensity": 0.75, "reflectivity": 4500}]
    fields = [("x", 0, F32, 1), ("y", 4, F32, 1), ("z", 8, F32, 1), ("intensity", 12, F32, 1),
              ("reflectivity", 16, U16, 1)]
    cloud = cloud_msg(points, fields, point_step=20)
    xyz_only = cloud_msg(points, fields[:3], point_step=12)

    def intensities(msg, field, scale=0.0):
        pipeline = Pipeline(predictor, PipelineConfig(lidar_intensity_field=field, lidar_intensity_scale=scale))
        return pipeline.accept("lidar", msg).array[:, 3].tolist()

    assert intensities(cloud, "auto") == [0.25, 0.75]
    assert intensities(xyz_only, "auto") == [0.0, 0.0]
    assert intensities(cloud, "reflectivity") == [600.0, 4500.0]   # the encoder's auto rule takes it from here
    assert intensities(cloud, "reflectivity", scale=3000.0) == pytest.approx([0.2, 1.0])
    assert intensities(cloud, "intensity", scale=0.5) == [0.5, 1.0]
    assert intensities(cloud, "") == [0.0, 0.0]
    with pytest.raises(ConversionError, match=r"no field 'reflectivity' \(lidar.intensity_field\); "
                                              r"it has \['x', 'y', 'z'\]"):
        intensities(xyz_only, "reflectivity")


def test_the_engine_counts_what_it_rejects_runs_and_leaves_out(world_frame, predictor):
    """One accept -> due -> run loop for node and bag evaluator: rejections, frames and left-out sensors
    are counted in the engine and show in its health."""
    from charm_ros.msgs import fields, images, pointclouds
    from charm_ros.runtime.engine import Engine
    from charm_ros.runtime.node_config import validate

    engine = Engine(predictor, validate({"model.input_size": [64, 64], "depth.enabled": False,
                                         "event.enabled": False}))
    assert "(fp32, backend torch), input 64x64, modalities rgb, lidar" in engine.describe()
    rgb = images.numpy_to_image(world_frame.rgb, "rgb8", frame_id="cam")
    rgb.header.stamp.sec = 1
    lidar = pointclouds.xyzi_to_pointcloud2(world_frame.lidar, frame_id="lidar")
    lidar.header.stamp.sec = 1
    broken = images.numpy_to_image(world_frame.rgb, "rgb8")
    broken.data = bytes(broken.data[:100])
    with pytest.raises(fields.ConversionError):
        engine.accept("rgb", broken, 1.0)
    engine.accept("rgb", rgb, 1.0)
    engine.accept("lidar", lidar, 1.0)
    frames = engine.due(1.0)
    assert [f.subset for f in frames] == [("rgb", "lidar")]
    result = engine.run(frames[0], 1.0)
    assert result.subset == ("rgb",), "no CameraInfo: LiDAR cannot be projected"
    engine.published(result, 1.05)
    c = engine.counters
    assert c.rejected["rgb"] == 1 and c.in_frames == {"rgb": 1, "lidar": 1} and c.left_out_frames == {"lidar": 1}
    health = engine.health(1.1, camera_info_topics=["/cam/info"])
    by_name = {m.name: m for m in health.modalities}
    assert health.frames == 1 and health.subset == ("rgb",)
    assert by_name["rgb"].rejected == 1 and "CameraInfo topics: /cam/info" in by_name["lidar"].left_out


def test_a_camera_info_of_another_size_is_a_camera_info_rejection_not_a_model_failure(world_frame, predictor):
    """A valid 128x128 CameraInfo on the topic of a 256-wide camera made every frame fail in the encoders."""
    from sensor_msgs.msg import CameraInfo

    from charm_ros.msgs import fields, images
    from charm_ros.runtime.engine import Engine
    from charm_ros.runtime.node_config import validate

    engine = Engine(predictor, validate({"model.input_size": [64, 64], "event.enabled": False,
                                         "depth.enabled": False, "lidar.enabled": False}))
    rgb = images.numpy_to_image(world_frame.rgb, "rgb8", frame_id="cam")  # 128x96
    rgb.header.stamp.sec = 1
    engine.accept("rgb", rgb, 1.0)
    other = CameraInfo(height=64, width=64, k=[50.0, 0, 32, 0, 50, 32, 0, 0, 1])
    with pytest.raises(fields.ConversionError, match="CameraInfo is 64x64 but the rgb images are 128x96"):
        engine.accept_camera_info("rgb", other)
    assert engine.counters.info_rejected["rgb"] == 1 and not engine.has_camera("rgb")
    result = engine.run(engine.due(1.0)[0], 1.0)
    assert result.subset == ("rgb",) and engine.counters.model_error == ""


def test_an_image_buffered_before_its_camera_changed_size_is_left_out_not_fatal(world_frame, predictor):
    """A small RGB image taken while its camera was unknown, then (before the frame holding it is
    encoded) a full-size image and its CameraInfo: the frame is encoded without the small image (LiDAR
    alone is left), with the reason. It used to raise out of the encoders and end the node's inference
    thread (a garbage publisher in CI)."""
    from sensor_msgs.msg import CameraInfo

    from charm_ros.msgs import images, pointclouds
    from charm_ros.runtime.engine import Engine
    from charm_ros.runtime.node_config import validate

    engine = Engine(predictor, validate({"model.input_size": [64, 64], "event.enabled": False,
                                         "depth.enabled": False}))
    small = images.numpy_to_image(world_frame.rgb[:32, :48], "rgb8", frame_id="cam")
    small.header.stamp.sec = 1
    lidar = pointclouds.xyzi_to_pointcloud2(world_frame.lidar, frame_id="lidar")
    lidar.header.stamp.sec = 1
    engine.accept("rgb", small, 1.0)  # no camera yet: accepted
    engine.accept("lidar", lidar, 1.0)
    [frame] = engine.due(1.0)
    full = images.numpy_to_image(world_frame.rgb, "rgb8", frame_id="cam")  # 128x96
    full.header.stamp.sec = 2
    engine.accept("rgb", full, 1.05)
    K = world_frame.K
    engine.accept_camera_info("rgb", CameraInfo(height=96, width=128,
                                                k=[K[0, 0], 0, K[0, 2], 0, K[1, 1], K[1, 2], 0, 0, 1]))
    result = engine.run(frame, 2.0)
    assert result.subset == ("lidar",) and engine.counters.model_error == ""
    assert "rgb image is 48x32 but the camera it is encoded in is 128x96" in result.skipped["rgb"]
    alone = Frame(stamp=1.0, reference="rgb", data={"rgb": frame.data["rgb"]}, stamps={"rgb": 1.0})
    with pytest.raises(FrameSkipped, match="rgb image is 48x32"):
        engine.run(alone, 2.0)
    assert engine.counters.frames_skipped == 1


@pytest.mark.parametrize("fx, match", [(1e300, "fx 1e\\+300 is not a plausible focal length"),
                                       (1e-300, "fx 1e-300 is not a plausible focal length")])
def test_implausible_focal_lengths_are_rejected_with_their_value(fx, match):
    from sensor_msgs.msg import CameraInfo

    from charm_ros.msgs import camera_info, fields

    with pytest.raises(fields.ConversionError, match=match):
        camera_info.camera_info_to_k(CameraInfo(height=256, width=256, k=[fx, 0, 128, 0, 200, 128, 0, 0, 1]))


@pytest.mark.parametrize("sec", [0, -5])
def test_unset_and_negative_stamps_are_rejected(world_frame, predictor, sec):
    """Outputs copy the input stamp: a zero or negative one would go onto every mask."""
    from charm_ros.msgs import fields, images

    pipeline = Pipeline(predictor, PipelineConfig(input_size=(64, 64)))
    rgb = images.numpy_to_image(world_frame.rgb, "rgb8")
    rgb.header.stamp.sec = sec
    with pytest.raises(fields.ConversionError, match="header stamp is .* unset or before 1970"):
        pipeline.accept("rgb", rgb)
