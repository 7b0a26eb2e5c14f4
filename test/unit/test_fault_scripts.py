"""Content faults scripted where dropouts are: the sim rig's frames (and charm-bag-record's), the demo
report's phases and charm-bag-eval --faults, which names per sensor the frames it was left out of for its
content. The node catching them over DDS: test/integration/test_node_content_faults.py."""
from __future__ import annotations

import json

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from charm_core.data.synthetic import World
from charm_core.inference import Predictor
from charm_ros.bags.evaluator import BagEvaluator
from charm_ros.bags.reader import read_in_stamp_order, stamp_ns
from charm_ros.bags.topics import DEFAULT_TOPICS
from charm_ros.runtime.dropouts import parse_dropouts, phases
from charm_ros.runtime.faults import FaultInjector, parse_faults
from charm_ros.runtime.node_config import validate
from charm_ros.runtime.parameters import load_param_file
from charm_ros.tools.bag_eval import main as bag_eval_main
from charm_ros.tools.bag_record import record
from charm_ros.tools.sim_rig import RIG_PARAMETERS, faulted_frame
from bag_helpers import PARAMS, record_rig_bag

FOUR = ("rgb", "depth", "event", "lidar")


@pytest.fixture(scope="module")
def frames():
    return list(World(seed=5, size_hw=(64, 80)).frames(8))


def test_the_rig_has_a_faults_parameter_beside_dropouts():
    names = [p.name for p in RIG_PARAMETERS]
    assert names.index("faults") == names.index("dropouts") + 1


def test_rig_frames_lie_only_inside_the_fault_window(frames):
    injector = FaultInjector(parse_faults("depth:frozen:0.2-0.5,lidar:sparse:0.3-0.6", FOUR), seed=1)
    out = [faulted_frame(f, injector, i / 10, FOUR) for i, f in enumerate(frames)]
    for i, (clean, lying) in enumerate(zip(frames, out)):
        t = i / 10
        assert lying.rgb is clean.rgb and lying.event is clean.event and lying.labels is clean.labels
        assert lying.stamp == clean.stamp   # the headers keep advancing, as a hung driver's do
        if 0.2 <= t < 0.5:
            np.testing.assert_array_equal(lying.depth, frames[2].depth)
        else:
            assert lying.depth is clean.depth
        if 0.3 <= t < 0.6:
            assert len(lying.lidar) < 0.05 * len(clean.lidar)
        else:
            assert lying.lidar is clean.lidar
    assert not np.array_equal(frames[2].depth, frames[3].depth)   # the drive moves: frozen is a fault


def test_faulted_frame_leaves_unscripted_sensors_and_the_input_alone(frames):
    before = frames[0].depth.copy()
    injector = FaultInjector(parse_faults("depth:saturated:0-1", FOUR))
    assert faulted_frame(frames[0], injector, 0.5, FOUR).depth.max() == faulted_frame(
        frames[0], injector, 0.5, FOUR).depth.min()
    np.testing.assert_array_equal(frames[0].depth, before)
    assert faulted_frame(frames[1], FaultInjector([]), 0.5, FOUR) is frames[1]


def test_demo_phases_name_faults_and_the_subset_expected():
    ph = phases(parse_dropouts("lidar:2-4"), 8.0, FOUR, parse_faults("depth:frozen:3-5"))
    assert [(p.start, p.end, p.name, p.faults, p.expected) for p in ph] == [
        (0, 2, "rgb+depth+event+lidar", (), "rgb+depth+event+lidar"),
        (2, 3, "rgb+depth+event", (), "rgb+depth+event"),
        (3, 4, "rgb+depth+event", ("depth:frozen",), "rgb+event"),
        (4, 5, "rgb+depth+event+lidar", ("depth:frozen",), "rgb+event+lidar"),
        (5, 8, "rgb+depth+event+lidar", (), "rgb+depth+event+lidar")]
    assert ph[2].label == "rgb+depth+event, depth frozen"
    # a faulted sensor that is also silent is a dropout, not a fault
    assert phases(parse_dropouts("depth:0-2"), 2.0, FOUR, parse_faults("depth:frozen:0-2"))[0].faults == ()


def test_bag_record_writes_the_faulted_content(tmp_path):
    bag = tmp_path / "frozen"
    record(bag, duration=1.0, seed=5, size=(48, 64), progress=False, faults="depth:frozen:0.3-0.7")
    with AnyReader([bag]) as reader:
        conn = next(c for c in reader.connections if c.topic == "/sim_rig/depth/image")
        depth = {stamp_ns(msg): bytes(msg.data) for msg in
                 (reader.deserialize(raw, conn.msgtype) for _, _, raw in reader.messages(connections=[conn]))}
    payloads = [depth[k] for k in sorted(depth)]
    assert len(payloads) == 10 and len(set(payloads[3:7])) == 1 and len(set(payloads)) == 7


@pytest.fixture(scope="module")
def rig_bag(tmp_path_factory):
    return record_rig_bag(tmp_path_factory.mktemp("bags") / "rig")


def test_evaluator_leaves_a_frozen_sensor_out_only_while_it_is_frozen(rig_bag, random_checkpoint):
    predictor = Predictor.from_checkpoint(random_checkpoint, device="cpu")
    evaluator = BagEvaluator(predictor, validate(load_param_file(PARAMS)), DEFAULT_TOPICS,
                             faults=parse_faults("depth:frozen:1.0-2.0"))
    for topic, msg, at, received in read_in_stamp_order(rig_bag, set(evaluator.topics.values())):
        evaluator.feed(topic, msg, at, received)
    evaluator.finish()
    first = min(stamp_ns(r.frame.data[r.frame.reference]) for r in evaluator.results)
    without = [(stamp_ns(r.frame.data[r.frame.reference]) - first) * 1e-9 for r in evaluator.results
               if "depth" not in r.subset]
    assert without, "frozen depth was never left out"
    # caught after a short confirmation, back after a few healthy frames (generous: the hysteresis is tuned)
    assert all(1.0 <= t < 2.0 + 0.6 for t in without), without
    assert all(r.subset == FOUR for r in evaluator.results
               if (stamp_ns(r.frame.data[r.frame.reference]) - first) * 1e-9 < 1.0)
    kinds, why = evaluator.report(0.0, {}).content_left_out["depth"]
    assert kinds == {"frozen": len(without)} and why.startswith("depth: frozen, ") and "left out" in why


def test_cli_faults_name_the_frames_left_out_and_why(rig_bag, random_checkpoint, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert bag_eval_main([str(rig_bag), "--checkpoint", str(random_checkpoint), "--json", str(out),
                          "--faults", "lidar:frozen_jitter:1.0-2.0", "--drop", "event:2.5-3"]) == 0
    report = json.loads(out.read_text())
    left_out = report["sensors"]["lidar"]["left_out_for_content"]
    assert set(left_out) == {"frozen"} and left_out["frozen"] >= 3
    assert all(not s["left_out_for_content"] for m, s in report["sensors"].items() if m != "lidar")
    assert report["dropped_by_schedule"] == {"event": 5}
    captured = capsys.readouterr()
    assert "left out for content" in captured.out
    assert "--faults: lidar:frozen_jitter:1.0-2.0" in captured.out
    assert "lidar: left out of" in captured.err and "for its content (frozen" in captured.err


@pytest.mark.parametrize("bad", ["depth:frozen", "depth:melted:1-2", "sonar:frozen:1-2", "rgb:sparse:1-2"])
def test_cli_rejects_a_bad_fault_script(rig_bag, random_checkpoint, bad):
    with pytest.raises(SystemExit):
        bag_eval_main([str(rig_bag), "--checkpoint", str(random_checkpoint), "--faults", bad])
