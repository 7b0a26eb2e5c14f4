"""`charm-bag-eval`: replay a rosbag2 through the node's own pipeline and score it, no ROS graph needed.

Messages are read with `rosbags` (sqlite3 or mcap, any publisher's types), put in header-stamp order,
and fed through the same conversions (Pipeline.accept), synchronizer and predictor as the live node,
with the stamps as the clock; each sensor of the checkpoint has a topic flag (--rgb ... --thermal).
Every synchronized frame is evaluated (no latest-wins dropping), so the result is deterministic.
Reports per subset (the checkpoint's 2^N - 1, in its order): frames, mIoU against a ground-truth topic if there
is one, latency; per sensor the frames it went into and its stamps' offset to the reference (a
sensor on another clock is named); `--dropouts depth:10-20` silences a sensor over an interval
(seconds from the first message), `--faults depth:frozen:10-20` makes its content lie meanwhile (the
frames its content health left it out of are counted per sensor, with the fault);
`--write-predictions` writes mask, colour mask, camera_info and labeled point cloud topics to a new
bag for RViz/Foxglove.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from charm_core.cli_help import HelpFormatter
from charm_core.inference import Predictor
from charm_core.runtimes import BACKENDS
from charm_ros.bags.cli import add_topic_arguments, check_topics, cli_errors, replay_settings, sensors_of_checkpoint
from charm_ros.bags.evaluator import BagEvaluator
from charm_ros.bags.reader import stamp_ns
from charm_ros.bags.topics import topic_keys
from charm_ros.msgs.outputs import OUTPUT_TYPES, output_messages, type_name
from charm_ros.paths import share_path
from charm_ros.runtime.dropouts import parse_dropouts
from charm_ros.runtime.faults import FAULTS, parse_faults
from charm_ros.runtime.pipeline import Result


PREDICTION_OUTPUTS = ("mask", "color_mask", "camera_info", "labeled_points")  # written as /charm/<name>


def write_predictions(out: Path, results: list[Result], palette: np.ndarray, storage: str = "mcap") -> None:
    """/charm/mask (mono8), /charm/color_mask (rgb8), /charm/camera_info and /charm/labeled_points (frames
    with LiDAR), built as the node builds them."""
    from rclpy.serialization import serialize_message

    typestore = get_typestore(Stores.ROS2_KILTED)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(out, version=8, storage_plugin=plugin) as writer:
        conns = {name: writer.add_connection(f"/charm/{name}", type_name(OUTPUT_TYPES[name]),
                                             typestore=typestore) for name in PREDICTION_OUTPUTS}
        for r in results:
            t = stamp_ns(r.frame.data[r.frame.reference])
            for name, msg in output_messages(r, PREDICTION_OUTPUTS, palette).items():
                writer.write(conns[name], t, serialize_message(msg))


def main(argv: list[str] | None = None) -> int:
    default_checkpoint = str(share_path("models", "charm_tiny_synthetic.safetensors"))
    sensors, sensor_error = sensors_of_checkpoint(argv, default_checkpoint)
    keys = topic_keys(tuple(s.name for s in sensors))
    parser = argparse.ArgumentParser(prog="charm-bag-eval", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("bag", type=Path, help="rosbag2 directory (sqlite3 or mcap)")
    parser.add_argument("--checkpoint", default=default_checkpoint,
                        help="its modalities beyond rgb/depth/event/lidar get topic flags too (e.g. --thermal)")
    parser.add_argument("--params", default=str(share_path("config", "charm.param.yaml")),
                        help="the node's parameter file (sync, geometry, modalities, input size)")
    add_topic_arguments(parser, keys)
    parser.add_argument("--dropouts", "--drop", action="append", default=[], metavar="SENSOR:START-END",
                        help="simulate dropouts, e.g. depth:10-20 (s from the first message); repeat or comma-separate")
    parser.add_argument("--faults", action="append", default=[], metavar="SENSOR:FAULT:START-END",
                        help="inject content faults on the converted samples, e.g. depth:frozen:10-20 (s from the "
                             f"first message; faults: {', '.join(FAULTS)}); repeat or comma-separate")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    parser.add_argument("--backend", default="auto", choices=BACKENDS,
                        help="inference runtime, as the node's model.backend (auto: onnxruntime on CPU); every "
                             "frame runs on it (a subset's graph is built before its first frame)")
    parser.add_argument("--reorder-window", type=float, default=1.0, help="seconds of receive time to sort stamps")
    parser.add_argument("--json", help="write the report here")
    parser.add_argument("--write-predictions", type=Path,
                        help="write /charm/mask, color_mask, camera_info and labeled_points to this bag")
    parser.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"), help="of --write-predictions")
    args = parser.parse_args(argv)
    with cli_errors(parser, args.bag):
        topics, named, config = replay_settings(args, keys, sensors, sensor_error)
        drop = parse_dropouts(",".join(args.dropouts), tuple(s.name for s in sensors))
        faults = parse_faults(",".join(args.faults), tuple(s.name for s in sensors))
        predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device, backend=args.backend)
        if not args.bag.exists():
            raise FileNotFoundError(f"no bag at {args.bag}")
        if args.write_predictions and args.write_predictions.exists():
            raise FileExistsError(f"{args.write_predictions} exists")
        check_topics(args.bag, topics, named)
        evaluator = BagEvaluator(predictor, config, topics, drop, faults)
    start = time.perf_counter()
    messages, undecodable = evaluator.replay(args.bag, args.reorder_window, "charm-bag-eval")
    report = evaluator.report(time.perf_counter() - start, messages)
    report.rejected.update({f"undecodable {t}": n for t, n in undecodable.items()})
    print(f"\n{args.bag}: {report.overall.frames} frames in {report.wall_s:.1f} s on {predictor.backend} "
          f"(rejected: {dict(report.rejected) or 'none'}; "
          f"dropped by --dropouts: {dict(report.dropped_by_schedule) or 'none'}; "
          f"--faults: {','.join(args.faults) or 'none'})\n")
    print(report.markdown())
    print()
    print(report.sensor_markdown())
    for warning in report.clock_warnings() + report.left_out_warnings():
        print(f"charm-bag-eval: {warning}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2))
    if args.write_predictions:
        write_predictions(args.write_predictions, evaluator.results, evaluator.engine.palette, args.storage)
        print(f"wrote predictions to {args.write_predictions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
