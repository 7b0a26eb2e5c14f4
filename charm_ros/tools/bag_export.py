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
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from charm_core.classes import IGNORE_INDEX, train_to_raw
from charm_core.cli_help import HelpFormatter
from charm_core.data.augment import resize
from charm_core.data.base import write_image
from charm_core.data.deliver import FOLDERS, SPLITS
from charm_core.data.synthetic.conditions import CONDITIONS
from charm_core.inference import Predictor
from charm_core.modalities import ModalitySpec
from charm_ros.paths import share_path
from charm_ros.runtime.pipeline import FrameSkipped
from charm_ros.tools.bag_eval import (BagEvaluator, add_topic_arguments, check_topics, cli_errors, count_messages,
                                      read_in_stamp_order, replay_settings, sensors_of_checkpoint, stamp_ns,
                                      topic_keys)


def folder_and_token(name: str) -> tuple[str, str]:
    """DELIVER's folder and file token of a modality (rgb -> img/_rgb); any other: its own name."""
    return FOLDERS.get(name, (name, f"_{name}"))


def stored_image(encoding: np.ndarray, spec: ModalitySpec) -> np.ndarray:
    """The PNG a loader turns back into `encoding`: uint8 encodings as they are; an intensity encoding
    (float [0, 1] over the spec's fixed range) as 16-bit stored units (x = (physical - offset) / scale)."""
    if encoding.dtype == np.uint8:
        return encoding
    if spec.kind != "intensity" or spec.range is None or spec.scale is None:
        raise ValueError(f"{spec.name}: only fixed-range intensity modalities with a scale can be exported "
                         f"(kind {spec.kind}); write its frames from the recording with your own tool")
    lo, hi = spec.range
    physical = lo + encoding[..., 0].astype(np.float64) * (hi - lo)
    return np.clip(np.rint((physical - spec.offset) / spec.scale), 0, 65535).astype(np.uint16)


class BagExporter(BagEvaluator):
    """Replays a bag like BagEvaluator, but writes each frame's encodings instead of running the model."""

    def __init__(self, predictor: Predictor, config, topics, out: Path, condition: str, split: str,
                 sequence: str, every: int = 1, max_frames: int | None = None,
                 window: tuple[float, float] = (0.0, float("inf"))) -> None:
        super().__init__(predictor, config, topics)
        self.specs = {s.name: s for s in predictor.info.config.specs}
        self.out, self.condition, self.split, self.sequence = out, condition, split, sequence
        self.every, self.max_frames, self.window = every, max_frames, window
        self.synchronized = 0
        self.written: list[tuple[int, str, tuple]] = []  # (stamp ns, frame name, letterbox) per frame

    def path(self, name: str, index: int, token: str) -> Path:
        return self.out / name / self.condition / self.split / self.sequence / f"{index:06d}{token}_front.png"

    def _run(self, frames) -> list:
        for frame in frames:
            self.synchronized += 1
            t = (stamp_ns(frame.data[frame.reference]) - self.first_stamp) * 1e-9
            full = self.max_frames is not None and len(self.written) >= self.max_frames
            if full or (self.synchronized - 1) % self.every or not self.window[0] <= t <= self.window[1]:
                continue
            try:
                encoded = self.engine.encode(frame, self.clock)
            except FrameSkipped:
                continue
            index = len(self.written)
            for name, image in encoded.images.items():
                folder, token = folder_and_token(name)
                write_image(self.path(folder, index, token), stored_image(image, self.specs[name]))
            self.written.append((stamp_ns(frame.data[frame.reference]), f"{index:06d}", encoded.box))
        return []

    def write_labels(self) -> int:
        """Labels of the written frames from the ground-truth topic, letterboxed like the images
        (padding and pixels without a class: 0 = unlabelled); returns how many frames had one."""
        folder, token = FOLDERS["semantic"]
        labelled = 0
        for stamp, name, box in self.written:
            truth = self.gt.get(stamp)
            if truth is None:
                continue
            labels = np.full(box.dst_hw, IGNORE_INDEX, np.uint8)
            content = resize(truth, box.content_hw, nearest=True)
            labels[: content.shape[0], : content.shape[1]] = content
            write_image(self.path(folder, int(name), token), train_to_raw(labels))
            labelled += 1
        return labelled


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
        total = count_messages(args.bag, set(exporter.topics.values()))
    messages: Counter = Counter()
    with tqdm(total=total, desc="charm-bag-export", unit="msg") as bar:
        for topic, msg, at, received in read_in_stamp_order(args.bag, set(exporter.topics.values()),
                                                            args.reorder_window, messages):
            exporter.feed(topic, msg, at, received)
            bar.set_postfix(frames=len(exporter.written), refresh=False)
            bar.update(sum(messages.values()) - bar.n)
        exporter.finish()
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
