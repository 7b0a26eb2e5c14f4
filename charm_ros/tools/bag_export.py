"""`charm-bag-export BAG --out DIR`: a recording becomes a DELIVER-layout training set.

The bag is replayed exactly as `charm-bag-eval` replays it (the node's conversions, synchronizer and
encoders, through the same Engine), and every synchronized frame is written as the network images
the node would feed the model: img/ (RGB), hha/ (depth), event/, lidar/, and a folder per other
modality of the checkpoint (intensity cameras as 16-bit PNGs in the modality's stored units). With a
ground-truth topic (`--gt`) the labels go to semantic/ (DELIVER ids: class + 1, 0 = unlabelled);
without one the frames are ready to label: put <frame>_semantic_front.png files in semantic/ with the
same relative path. Written sets load with the DELIVER loader and train with charm-train.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


from charm_core.cli_help import HelpFormatter
from charm_core.data.deliver import SPLITS
from charm_core.data.synthetic.conditions import CONDITIONS
from charm_core.inference import Predictor
from charm_ros.bags.cli import add_topic_arguments, check_topics, cli_errors, replay_settings, sensors_of_checkpoint
from charm_ros.bags.exporter import BagExporter
from charm_ros.bags.topics import topic_keys
from charm_ros.paths import share_path


def main(argv: list[str] | None = None) -> int:
    default_checkpoint = str(share_path("models", "charm_tiny_synthetic.safetensors"))
    sensors, sensor_error = sensors_of_checkpoint(argv, default_checkpoint)
    keys = topic_keys(tuple(s.name for s in sensors))
    parser = argparse.ArgumentParser(prog="charm-bag-export", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("bag", type=Path, help="rosbag2 directory (sqlite3 or mcap)")
    parser.add_argument("--out", type=Path, required=True, help="dataset root to write (DELIVER layout)")
    parser.add_argument("--checkpoint", default=default_checkpoint,
                        help="the model whose modalities and input size the set is for")
    parser.add_argument("--params", default=str(share_path("config", "charm.param.yaml")),
                        help="the node's parameter file (sync, geometry, sensors, input size)")
    add_topic_arguments(parser, keys)
    parser.add_argument("--condition", default="sun", choices=CONDITIONS, help="the set's condition folder")
    parser.add_argument("--split", default="train", choices=SPLITS, help="the set's split folder")
    parser.add_argument("--sequence", help="sequence folder name (default: the bag's name)")
    parser.add_argument("--every", type=int, default=1, help="write every Nth synchronized frame")
    parser.add_argument("--max-frames", type=int, help="stop writing after this many frames")
    parser.add_argument("--start", type=float, default=0.0, help="seconds from the first message")
    parser.add_argument("--end", type=float, default=float("inf"), help="seconds from the first message")
    parser.add_argument("--reorder-window", type=float, default=1.0, help="seconds of receive time to sort stamps")
    args = parser.parse_args(argv)
    if args.every < 1 or (args.max_frames is not None and args.max_frames < 1) or args.end < args.start:
        parser.error("--every and --max-frames must be >= 1, and --end >= --start")
    with cli_errors(parser, args.bag):
        topics, named, config = replay_settings(args, keys, sensors, sensor_error)
        predictor = Predictor.from_checkpoint(args.checkpoint, device="cpu")
        if not args.bag.exists():
            raise FileNotFoundError(f"no bag at {args.bag}")
        if args.out.exists() and any(args.out.iterdir()):
            raise FileExistsError(f"{args.out} exists and is not empty")
        check_topics(args.bag, topics, named)
        exporter = BagExporter(predictor, config, topics, args.out, args.condition, args.split,
                               args.sequence or args.bag.name, args.every, args.max_frames, (args.start, args.end))
    exporter.replay(args.bag, args.reorder_window, "charm-bag-export")
    labelled = exporter.write_labels() if topics.get("gt") else 0
    (args.out / "export.json").write_text(json.dumps({
        "bag": str(args.bag), "checkpoint": args.checkpoint, "modalities": list(predictor.modalities),
        "frames": len(exporter.written), "labelled": labelled, "synchronized": exporter.synchronized,
        "rejected": dict(exporter.rejected), "condition": args.condition, "split": args.split}, indent=2))
    print(f"wrote {len(exporter.written)} of {exporter.synchronized} synchronized frames to {args.out} "
          f"({labelled} labelled{'' if labelled == len(exporter.written) else '; label the others in semantic/'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
