"""The demo report scores masks of any size, names only the files it wrote, and takes any sensor set."""
import json

import cv2
import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter
from std_msgs.msg import Header, String

from charm_ros.msgs import images
from charm_ros.tools.demo_report import DemoReport


@pytest.fixture
def report_node(domain_id, tmp_path):
    rclpy.init(domain_id=domain_id)
    node = DemoReport(parameter_overrides=[Parameter("duration", value=2.0),
                                           Parameter("output_dir", value=str(tmp_path / "demo"))])
    yield node
    node.destroy_node()
    rclpy.shutdown()


def feed(node: DemoReport, truth: np.ndarray, mask: np.ndarray, with_rgb: bool = True) -> None:
    for i in range(10):
        header = Header(frame_id="camera")
        header.stamp.sec, header.stamp.nanosec = 100, i * 100_000_000
        node._on_status(String(data=json.dumps({"stamp": [100, i * 100_000_000], "t": i * 0.2, "live": []})))
        node._on_truth(images.numpy_to_image(truth, "mono8", header))
        if with_rgb:
            node._on_rgb(images.numpy_to_image(np.zeros((*truth.shape, 3), np.uint8), "rgb8", header))
        node.subset = "rgb+depth+event+lidar"
        node._on_mask(images.numpy_to_image(mask, "mono8", header))


def test_a_mask_at_another_resolution_is_scored_against_resized_truth(report_node, tmp_path, capsys):
    truth = np.zeros((256, 256), np.uint8)
    truth[128:] = 13                      # road below, sky (class 0) above
    mask = truth[::2, ::2].copy()         # a checkpoint trained at 128x128: a perfect, smaller mask
    feed(report_node, truth, mask)
    summary = report_node.report()
    assert summary["phases"][0]["masks"] == 10
    assert summary["phases"][0]["miou_present"] == pytest.approx(100.0)
    out = capsys.readouterr().out
    assert "contact_sheet.png" in out and (tmp_path / "demo" / "contact_sheet.png").is_file()


def test_only_files_written_are_named(report_node, tmp_path, capsys):
    report_node.report()  # nothing arrived: no phase has a sample
    out = capsys.readouterr().out
    assert (tmp_path / "demo" / "summary.json").is_file()
    assert not (tmp_path / "demo" / "contact_sheet.png").exists() and "contact_sheet.png" not in out.split("wrote")[-1]


def test_a_five_sensor_run_names_phases_in_the_models_order_and_shows_the_thermal_camera(domain_id, tmp_path):
    rclpy.init(domain_id=domain_id)
    node = DemoReport(parameter_overrides=[
        Parameter("duration", value=2.0), Parameter("output_dir", value=str(tmp_path / "demo5")),
        Parameter("modalities", value="rgb,depth,event,lidar,thermal"), Parameter("dropouts", value="thermal:1-2")])
    try:
        truth = np.zeros((64, 64), np.uint8)
        for i in range(10):
            header = Header(frame_id="camera")
            header.stamp.sec, header.stamp.nanosec = 100, i * 100_000_000
            node._on_status(String(data=json.dumps({"stamp": [100, i * 100_000_000], "t": i * 0.2, "live": []})))
            node._on_truth(images.numpy_to_image(truth, "mono8", header))
            node._on_rgb(images.numpy_to_image(np.zeros((64, 64, 3), np.uint8), "rgb8", header))
            thermal = np.full((64, 64), 29000, np.uint16)  # 290 K
            node._on_camera("thermal", images.numpy_to_image(thermal, "mono16", header))
            node.subset = "rgb+depth+event+lidar+thermal" if i < 5 else "rgb+depth+event+lidar"
            node._on_mask(images.numpy_to_image(truth, "mono8", header))
        phases = node.report()["phases"]
        sheet = cv2.imread(str(tmp_path / "demo5" / "contact_sheet.png"))
    finally:
        node.destroy_node()
        rclpy.shutdown()
    assert [(p["live"], p["subset"], p["masks"]) for p in phases] == [
        ("rgb+depth+event+lidar+thermal", "rgb+depth+event+lidar+thermal", 5), ("rgb+depth+event+lidar",) * 2 + (5,)]
    assert phases[1]["switch_s"] == 0.0
    # masks every 0.2 s of rig time over 0-1 s and 1-2 s: the last one at 1.8 s leaves 0.2 s to the end
    assert [p["max_gap_s"] for p in phases] == [pytest.approx(0.2), pytest.approx(0.2)]
    tiles = sheet[-160:, -4 * 160:]   # rgb input, thermal input, ground truth, prediction
    assert tiles.shape[1] == 640 and (tiles[:, 160:320] == 128).all(), "290 K in 250..330 K is mid-gray"
