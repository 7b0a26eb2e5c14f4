"""Rosbag evaluation (charm_ros/bags, charm-bag-eval): both storage plugins, foreign encodings and layouts,
--drop, unknown messages, the ONNX Runtime backend. A bag played to the live node: test/integration/test_bag_play.py."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer

from charm_core.data.synthetic import World
from charm_core.encoders import Letterbox
from charm_core.inference import Predictor
from charm_ros.bags.evaluator import BagEvaluator
from charm_ros.bags.reader import count_messages, read_in_stamp_order
from charm_ros.bags.topics import DEFAULT_TOPICS
from charm_ros.tools.bag_eval import main as bag_eval_main
from charm_ros.tools.bag_play import main as bag_play_main
from charm_ros.tools.bag_record import RIG_PREFIX
from charm_ros.runtime.dropouts import parse_dropouts
from charm_ros.runtime.node_config import validate
from charm_ros.runtime.parameters import load_param_file
from charm_ros.tools.sim_rig import RigEncoding, frame_messages
from bag_helpers import PARAMS, SIZE, TS, evaluate, masks_by_stamp, record_rig_bag

@pytest.fixture(scope="module")
def rig_bag(tmp_path_factory) -> Path:
    return record_rig_bag(tmp_path_factory.mktemp("bags") / "rig_mcap")


@pytest.fixture(scope="module")
def predictor(random_checkpoint):
    return Predictor.from_checkpoint(random_checkpoint, device="cpu")


def test_storage_plugins_give_identical_results(rig_bag, tmp_path, predictor):
    sqlite = tmp_path / "rig_sqlite"
    record_rig_bag(sqlite, storage="sqlite3")
    assert (sqlite / "rig_sqlite.db3").is_file() and (rig_bag / "rig_mcap.mcap").is_file()
    a, b = masks_by_stamp(evaluate(rig_bag, predictor)), masks_by_stamp(evaluate(sqlite, predictor))
    assert len(a) == 30 and a.keys() == b.keys()
    for key in a:
        assert a[key][0] == b[key][0] == ("rgb", "depth", "event", "lidar")
        np.testing.assert_array_equal(a[key][1], b[key][1])


def test_cli_reports_subsets_miou_and_writes_predictions(rig_bag, tmp_path, random_checkpoint, capsys):
    out, preds = tmp_path / "report.json", tmp_path / "preds"
    assert bag_eval_main([str(rig_bag), "--checkpoint", str(random_checkpoint), "--json", str(out),
                          "--write-predictions", str(preds), "--drop", "lidar:1-2"]) == 0
    report = json.loads(out.read_text())
    assert report["overall"]["frames"] == 30 and report["overall"]["miou"] is not None
    assert set(report["subsets"]) == {"rgb+depth+event", "rgb+depth+event+lidar"}
    assert report["subsets"]["rgb+depth+event"]["frames"] == 10
    assert report["dropped_by_schedule"] == {"lidar": 10}
    assert "| rgb+depth+event |" in capsys.readouterr().out
    with AnyReader([preds]) as reader:
        topics = {c.topic: c.msgcount for c in reader.connections}
        # labeled points for the 20 frames with LiDAR (--drop silenced it for 10), in the cloud's own frame
        assert topics == {"/charm/mask": 30, "/charm/color_mask": 30, "/charm/camera_info": 30,
                          "/charm/labeled_points": 20}
        conn = next(c for c in reader.connections if c.topic == "/charm/labeled_points")
        cloud = reader.deserialize(next(reader.messages(connections=[conn]))[2], conn.msgtype)
        assert [f.name for f in cloud.fields] == ["x", "y", "z", "intensity", "confidence", "label"]
        assert cloud.header.frame_id == "lidar" and cloud.width > 100 and cloud.point_step == 24
        conn = next(c for c in reader.connections if c.topic == "/charm/mask")
        _, t, raw = next(reader.messages(connections=[conn]))
        mask = reader.deserialize(raw, conn.msgtype)
        # the mask has the letterboxed network resolution (256 wide for a 160x128 camera), stamped as its input
        assert (mask.height, mask.width, mask.encoding) == (*Letterbox.fit(SIZE, (256, 256)).content_hw, "mono8")
        assert t == 1_700_000_000 * 10 ** 9


def test_drop_changes_subsets_exactly_over_the_interval(rig_bag, predictor):
    evaluator = evaluate(rig_bag, predictor, drop=parse_dropouts("depth:1.0-2.0"))
    first = min(masks_by_stamp(evaluator))
    for key, (subset, _) in masks_by_stamp(evaluator).items():
        t = (key - first) * 1e-9
        expected = ("rgb", "event", "lidar") if 1.0 <= t < 2.0 - 1e-9 else ("rgb", "depth", "event", "lidar")
        assert subset == expected, f"t={t:.2f}: {subset}"


def _foreign_copy(src: Path, dst: Path, with_gt: bool, compressed: bool = False,
                  lidar_clock_ahead_s: float = 0.0) -> dict[str, str]:
    """The same frames as another driver would record them: bgr8 with padded rows, 16UC1 millimetres
    with padded rows, a PointCloud2 with extra fields and padding (Ouster-like), other topic names,
    plus an unknown message type; no ground truth unless asked. `compressed`: RGB and depth in
    image_transport's compressed (PNG) and compressedDepth transports instead. `lidar_clock_ahead_s`:
    the LiDAR stamps in a clock running that much ahead."""
    Header, Time = TS.types["std_msgs/msg/Header"], TS.types["builtin_interfaces/msg/Time"]
    Image, PointCloud2 = TS.types["sensor_msgs/msg/Image"], TS.types["sensor_msgs/msg/PointCloud2"]
    PointField = TS.types["sensor_msgs/msg/PointField"]
    Compressed = TS.types["sensor_msgs/msg/CompressedImage"]
    topics = {"rgb": "/cam/color/image_raw", "depth": "/cam/depth/image_rect_raw", "event": "/dvs/frame",
              "lidar": "/os1/points", "rgb_info": "/cam/color/camera_info", "depth_info": "/cam/depth/camera_info",
              "gt": "/labels" if with_gt else ""}
    rename = {DEFAULT_TOPICS[k]: v for k, v in topics.items() if v}

    def padded(pixels: np.ndarray, pad: int) -> tuple[np.ndarray, int]:
        rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
        out = np.zeros((rows.shape[0], rows.shape[1] + pad), np.uint8)
        out[:, : rows.shape[1]] = rows
        return out.ravel(), out.shape[1]

    with AnyReader([src]) as reader, Writer(dst, version=8, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conns = {}
        unknown = writer.add_connection("/vendor/status", "std_msgs/msg/String", typestore=TS)
        for conn, t, raw in reader.messages():
            if conn.topic not in rename:
                continue
            msg = reader.deserialize(raw, conn.msgtype)
            ns = msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec
            if conn.topic == DEFAULT_TOPICS["lidar"]:
                ns += round(lidar_clock_ahead_s * 1e9)
            header = Header(stamp=Time(sec=ns // 10 ** 9, nanosec=ns % 10 ** 9), frame_id=msg.header.frame_id)
            msgtype = conn.msgtype
            if conn.topic == DEFAULT_TOPICS["rgb"]:
                bgr = np.ascontiguousarray(np.asarray(msg.data).reshape(msg.height, msg.width, 3)[:, :, ::-1])
                if compressed:
                    msg, msgtype = Compressed(header=header, format="rgb8; png compressed bgr8",
                                              data=cv2.imencode(".png", bgr)[1].ravel()), Compressed.__msgtype__
                else:
                    data, step = padded(bgr, 8)
                    msg = Image(header=header, height=msg.height, width=msg.width, encoding="bgr8", is_bigendian=0,
                                step=step, data=data)
            elif conn.topic == DEFAULT_TOPICS["depth"]:
                depth = np.asarray(msg.data).view(np.float32).reshape(msg.height, msg.width)
                mm = np.round(depth * 1000).astype(np.uint16)
                if compressed:  # 12-byte compressedDepth header (format, quantA, quantB), then a 16-bit PNG
                    head = np.zeros(12, np.uint8)
                    msg = Compressed(header=header, format="16UC1; compressedDepth png",
                                     data=np.concatenate([head, cv2.imencode(".png", mm)[1].ravel()]))
                    msgtype = Compressed.__msgtype__
                else:
                    data, step = padded(mm, 4)
                    msg = Image(header=header, height=msg.height, width=msg.width, encoding="16UC1", is_bigendian=0,
                                step=step, data=data)
            elif conn.topic == DEFAULT_TOPICS["lidar"]:
                xyzi = np.asarray(msg.data).view(np.float32).reshape(-1, 4)
                n = len(xyzi)
                cloud = np.zeros(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("pad", "<u4"),
                                           ("t", "<f8"), ("intensity", "<f4"), ("ring", "<u2"), ("pad2", "<u2")])
                cloud["x"], cloud["y"], cloud["z"], cloud["intensity"] = xyzi.T
                cloud["ring"] = np.arange(n) % 32
                fields = [PointField(name=nm, offset=off, datatype=dt, count=1) for nm, off, dt in
                          (("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("t", 16, 8), ("intensity", 24, 7), ("ring", 28, 4))]
                msg = PointCloud2(header=header, height=1, width=n, fields=fields, is_bigendian=False, point_step=32,
                                  row_step=32 * n, data=cloud.view(np.uint8), is_dense=True)
            transport = {DEFAULT_TOPICS["rgb"]: "/compressed", DEFAULT_TOPICS["depth"]: "/compressedDepth"}
            name = rename[conn.topic] + (transport.get(conn.topic, "") if compressed else "")
            if name not in conns:
                conns[name] = writer.add_connection(name, msgtype, typestore=TS)
            writer.write(conns[name], t, TS.serialize_cdr(msg, msgtype))
            ok = TS.types["std_msgs/msg/String"](data="ok")
            writer.write(unknown, t, TS.serialize_cdr(ok, "std_msgs/msg/String"))
    return topics


def test_foreign_encodings_and_layouts_match_the_rig_version(rig_bag, tmp_path, predictor):
    topics = _foreign_copy(rig_bag, tmp_path / "foreign", with_gt=True)
    native = evaluate(rig_bag, predictor)
    foreign = evaluate(tmp_path / "foreign", predictor, topics=topics)
    a, b = masks_by_stamp(native), masks_by_stamp(foreign)
    assert a.keys() == b.keys() and not foreign.rejected
    agree = np.mean([np.mean(a[k][1] == b[k][1]) for k in a])
    assert agree > 0.995, f"only {agree:.4f} of the pixels agree (mm quantisation of depth aside)"
    ra, rb = native.report(0.0, Counter()).as_dict(), foreign.report(0.0, Counter()).as_dict()
    assert rb["overall"]["miou"] == pytest.approx(ra["overall"]["miou"], abs=0.5)


def test_compressed_transports_give_the_same_masks_as_raw_images(rig_bag, tmp_path, predictor):
    raw_topics = _foreign_copy(rig_bag, tmp_path / "raw", with_gt=True)
    topics = _foreign_copy(rig_bag, tmp_path / "compressed", with_gt=True, compressed=True)
    topics.update(rgb=topics["rgb"] + "/compressed", depth=topics["depth"] + "/compressedDepth")
    raw = evaluate(tmp_path / "raw", predictor, topics=raw_topics)
    packed = evaluate(tmp_path / "compressed", predictor, topics=topics)
    a, b = masks_by_stamp(raw), masks_by_stamp(packed)
    assert not packed.rejected and len(a) > 10 and a.keys() == b.keys()
    assert all(a[k][0] == b[k][0] == ("rgb", "depth", "event", "lidar") for k in a)
    for k in a:  # PNG is lossless: the very same inputs, hence the very same masks
        np.testing.assert_array_equal(a[k][1], b[k][1])


@pytest.mark.parametrize("ahead_s, in_frames", [(5.0, False), (0.7, True)])
def test_a_sensor_on_another_clock_is_named_not_silently_left_out(rig_bag, tmp_path, random_checkpoint, capsys,
                                                                  ahead_s, in_frames):
    """LiDAR stamps 5 s ahead match no RGB frame (only LiDAR-alone frames once the 3 s of RGB are
    over); 0.7 s ahead they pair with RGB frames of another instant. Either way the report names the
    sensor and its offset (receive time minus stamp, compared), and the clock running ahead neither
    holds the bag in memory nor moves the replay clock into its future."""
    topics = _foreign_copy(rig_bag, tmp_path / "ahead", with_gt=True, lidar_clock_ahead_s=ahead_s)
    (tmp_path / "topics.yaml").write_text(json.dumps(topics))
    out = tmp_path / "report.json"
    assert bag_eval_main([str(tmp_path / "ahead"), "--checkpoint", str(random_checkpoint), "--topics",
                          str(tmp_path / "topics.yaml"), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    lidar = report["sensors"]["lidar"]
    assert report["offsets_relative_to"] == "rgb" and lidar["stamp_offset_s"] == pytest.approx(ahead_s, abs=0.01)
    assert abs(report["sensors"]["depth"]["stamp_offset_s"]) < 0.01
    with_rgb = sum(s["frames"] for name, s in report["subsets"].items() if name.startswith("rgb"))
    assert with_rgb == 30 and report["sensors"]["rgb"]["in_frames"] == 30
    assert (report["subsets"].get("rgb+depth+event+lidar", {}).get("frames", 0) > 0) == in_frames
    replay = [(topic, at - received) for topic, _, at, received in
              read_in_stamp_order(tmp_path / "ahead", {topics["rgb"], topics["lidar"]}, window_s=1.0)]
    order = [topic for topic, _ in replay]
    assert max(ahead for _, ahead in replay) <= 1e9, "nothing replays more than the window after its receipt"
    assert order.index(topics["lidar"]) < len(order) - 1 - order[::-1].index(topics["rgb"]), \
        "LiDAR replays among the RGB messages, not held back to the end of the bag"
    warning = [line for line in capsys.readouterr().err.splitlines() if line.startswith("charm-bag-eval: lidar:")]
    assert len(warning) == 1 and f"{ahead_s:.3f} s ahead of rgb's" in warning[0] and "lidar.time_offset" in warning[0]


def test_sensors_left_out_for_want_of_a_camera_info_are_named(rig_bag, tmp_path, random_checkpoint, capsys):
    """Without the CameraInfo topics, depth and LiDAR cannot be encoded: the frames run on RGB and
    event, and the report says which sensors were left out of how many frames, and why."""
    out = tmp_path / "report.json"
    assert bag_eval_main([str(rig_bag), "--checkpoint", str(random_checkpoint), "--camera-info", "",
                          "--depth-camera-info", "", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["subsets"]) == {"rgb+event"} and report["overall"]["frames"] == 30
    assert report["sensors"]["depth"]["left_out_of_frames"] == report["sensors"]["lidar"]["left_out_of_frames"] == 30
    assert report["sensors"]["rgb"]["left_out_of_frames"] == 0
    err = capsys.readouterr().err
    assert "depth: left out of 30 frames: no CameraInfo received yet" in err and "lidar: left out of 30" in err


def test_progress_total_counts_the_evaluated_topics_messages(rig_bag):
    wanted = {DEFAULT_TOPICS["rgb"], DEFAULT_TOPICS["lidar"], "/not/in/the/bag"}
    with AnyReader([rig_bag]) as reader:
        expected = sum(1 for c, _, _ in reader.messages() if c.topic in wanted)
    assert expected == 60 and count_messages(rig_bag, wanted) == expected
    assert count_messages(rig_bag, {"/not/in/the/bag"}) is None


def test_unreadable_bags_and_absent_topics_are_clear_errors(rig_bag, tmp_path, random_checkpoint, capsys):
    """Neither tool ends in a traceback; bag play checks before it starts ROS (so no graph is needed here)."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.yaml").write_text("not: [a, bag")
    for main, extra in ((bag_eval_main, ["--checkpoint", str(random_checkpoint)]), (bag_play_main, [])):
        with pytest.raises(SystemExit) as exit_info:
            main([str(broken), *extra])
        assert exit_info.value.code == 2
        assert f"cannot read the bag {broken}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        bag_play_main([str(rig_bag), "--topics", "/sim_rig/rgb/image", "/camera/color/image_raw"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "topics not in the bag: /camera/color/image_raw" in err and "/sim_rig/depth/image" in err


def test_bag_without_ground_truth_gives_subset_and_latency_only(rig_bag, tmp_path, random_checkpoint):
    topics = _foreign_copy(rig_bag, tmp_path / "nogt", with_gt=False)
    (tmp_path / "topics.yaml").write_text(json.dumps({k: v for k, v in topics.items() if k != "gt"}))
    out = tmp_path / "report.json"
    assert bag_eval_main([str(tmp_path / "nogt"), "--checkpoint", str(random_checkpoint), "--topics",
                          str(tmp_path / "topics.yaml"), "--gt", "", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["overall"]["frames"] == 30 and report["overall"]["miou"] is None
    assert report["overall"]["latency_ms_median"] > 0


def test_a_slower_sensor_goes_into_every_frame_near_it_and_is_counted_per_frame(predictor):
    """A 30 Hz camera with a 10 Hz LiDAR: each camera frame takes the sweep nearest to it (33 ms at
    most), so 29 of 30 frames have both (the last one's next sweep never comes); the report counts
    the frames the LiDAR went into (29), not its 10 sweeps."""
    world = World(seed=9, size_hw=SIZE, fps=30.0)
    evaluator = BagEvaluator(predictor, validate(load_param_file(PARAMS)), DEFAULT_TOPICS)
    for i in range(30):
        stamp_ns = 100 * 10**9 + round(i * 1e9 / 30)
        live = ["rgb", "lidar"] if i % 3 == 0 else ["rgb"]
        stamp = Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
        for topic, msg in frame_messages(world.frame_at(i / 30), stamp, live, RigEncoding()).items():
            evaluator.feed(RIG_PREFIX + topic, msg)
    evaluator.finish()
    report = evaluator.report(1.0, Counter())
    assert {name: s.frames for name, s in report.subsets.items()} == {"rgb": 1, "rgb+lidar": 29}
    assert report.used["rgb"] == (30, 30) and report.used["lidar"] == (10, 29)
    lidar_stamps = [r.frame.stamps.get("lidar") for r in evaluator.results]
    assert lidar_stamps[:4] == [100.0, 100.0, 100.1, 100.1]


@pytest.mark.slow
def test_repeated_dropouts_accumulate(rig_bag, tmp_path, random_checkpoint):
    """`--drop depth:1-3 --drop rgb:2-4` used only the last schedule."""
    out = tmp_path / "report.json"
    assert bag_eval_main([str(rig_bag), "--checkpoint", str(random_checkpoint), "--drop", "depth:0.5-1.5",
                          "--dropouts", "rgb:1-2", "--json", str(out)]) == 0
    dropped = json.loads(out.read_text())["dropped_by_schedule"]
    assert dropped["depth"] == 10 and dropped["rgb"] == 10


def test_a_named_topic_missing_from_the_bag_is_an_error_listing_its_topics(rig_bag, random_checkpoint, capsys):
    with pytest.raises(SystemExit) as done:
        bag_eval_main([str(rig_bag), "--checkpoint", str(random_checkpoint), "--rgb", "/a/topic/not/in/the/bag"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "--rgb /a/topic/not/in/the/bag" in err and "/sim_rig/rgb/image" in err


def test_per_sensor_statistics_are_printed(rig_bag, random_checkpoint, capsys):
    assert bag_eval_main([str(rig_bag), "--checkpoint", str(random_checkpoint)]) == 0
    out = capsys.readouterr().out
    table = out[out.index("| sensor |"):].splitlines()
    rows = {line.split("|")[1].strip(): line for line in table[2:6]}
    assert set(rows) == {"rgb", "depth", "event", "lidar"}
    assert "| 30 | 30 | 0 | reference |" in rows["rgb"]


@pytest.mark.slow
def test_onnxruntime_backend_matches_torch_on_a_recorded_bag(rig_bag, tmp_path, random_checkpoint):
    """charm-bag-eval --backend onnxruntime within 0.05 mIoU of --backend torch on every subset."""
    reports = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / f"{backend}.json"
        assert bag_eval_main([str(rig_bag), "--checkpoint", str(random_checkpoint), "--backend", backend,
                              "--dropouts", "depth:1-2", "--json", str(out)]) == 0
        reports[backend] = json.loads(out.read_text())
    torch_subsets, ort_subsets = reports["torch"]["subsets"], reports["onnxruntime"]["subsets"]
    assert set(torch_subsets) == set(ort_subsets) and len(torch_subsets) >= 2
    for name, stats in torch_subsets.items():
        assert ort_subsets[name]["frames"] == stats["frames"]
        assert ort_subsets[name]["miou"] == pytest.approx(stats["miou"], abs=0.05), name
