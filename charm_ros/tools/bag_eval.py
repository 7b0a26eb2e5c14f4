"""`charm-bag-eval`: replay a rosbag2 through the node's own pipeline and score it, no ROS graph needed.

Messages are read with `rosbags` (sqlite3 or mcap, any publisher's types), put in header-stamp order,
and fed through the same conversions (Pipeline.accept), synchronizer and predictor as the live node,
with the stamps as the clock; each sensor of the checkpoint has a topic flag (--rgb ... --thermal).
Every synchronized frame is evaluated (no latest-wins dropping), so the result is deterministic.
Reports per subset (the checkpoint's 2^N - 1, in its order): frames, mIoU against a ground-truth topic if there
is one, latency; per sensor the frames it went into and its stamps' offset to the reference (a
sensor on another clock is named); `--dropouts depth:10-20` silences a sensor over an interval (seconds
from the first message); `--write-predictions` writes mask, colour mask, camera_info and labeled point
cloud topics to a new bag for RViz/Foxglove.
"""
from __future__ import annotations

import argparse
import heapq
import json
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import yaml
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from tqdm import tqdm

from charm_core.checkpoint import read_modality_specs
from charm_core.cli_help import HelpFormatter
from charm_core.data.augment import resize
from charm_core.inference import Predictor
from charm_core.runtimes import BACKENDS
from charm_core.metrics import ConfusionMatrix
from charm_core.modalities import MODALITIES, all_subsets, subset_name
from charm_ros.msgs import conversions
from charm_ros.msgs.outputs import OUTPUT_TYPES, output_messages
from charm_ros.paths import share_path
from charm_ros.runtime.engine import Engine
from charm_ros.runtime.health import OFF_CLOCK_S, offset_text
from charm_ros.runtime.node_config import DELIVER_SENSORS, NodeConfig, node_sensors, validate
from charm_ros.runtime.parameters import load_param_file
from charm_ros.runtime.pipeline import FrameSkipped, Result
from charm_ros.tools.dropouts import Dropout, dropped_at, parse_dropouts

RIG = "/sim_rig/"
NO_CAMERA_INFO = ("event", "lidar")  # sensors without a CameraInfo topic key


def topic_keys(sensors: tuple[str, ...] = MODALITIES) -> tuple[str, ...]:
    """The topic keys of a node with these sensors: one per sensor, `<sensor>_info` per camera's
    CameraInfo, and `gt`."""
    return sensors + tuple(f"{m}_info" for m in sensors if m not in NO_CAMERA_INFO) + ("gt",)


def default_topics(keys: tuple[str, ...]) -> dict[str, str]:
    """The sensor rig's topic of each key (what charm-bag-record writes)."""
    def topic(key: str) -> str:
        if key in ("gt", "lidar"):
            return RIG + ("ground_truth" if key == "gt" else "lidar/points")
        return RIG + (f"{key[:-len('_info')]}/camera_info" if key.endswith("_info") else f"{key}/image")
    return {k: topic(k) for k in keys}


TOPIC_KEYS = topic_keys()
DEFAULT_TOPICS = default_topics(TOPIC_KEYS)


@dataclass
class SubsetStats:
    frames: int = 0
    confusion: ConfusionMatrix | None = None
    latency_ms: list[float] = field(default_factory=list)   # encode + forward, per frame
    forward_ms: list[float] = field(default_factory=list)


@dataclass
class BagReport:
    subsets: dict[str, SubsetStats]
    overall: SubsetStats
    messages: Counter            # topic -> read
    rejected: Counter            # modality (or topic) -> messages that failed conversion/checks
    reasons: dict[str, str]      # modality -> last rejection reason
    dropped_by_schedule: Counter
    skipped_frames: int
    unmatched_gt_frames: int
    wall_s: float
    used: dict[str, tuple[int, int]] = field(default_factory=dict)  # sensor -> (synchronized messages, frames it went into)
    offsets: dict[str, float] = field(default_factory=dict)  # sensor -> its stamps minus the reference's (s)
    reference: str | None = None  # the highest-priority sensor in the bag, which the offsets refer to
    left_out: dict[str, tuple[int, str]] = field(default_factory=dict)  # sensor -> (frames it was left out of, why)

    def clock_warnings(self) -> list[str]:
        """Sensors on another clock (or with a wrong time_offset), as the node's diagnostics name them:
        messages in no frame, or stamps further from the reference's than sensor latencies explain
        (receive minus stamp compared, medians)."""
        out = []
        for m, (received, used) in self.used.items():
            offset = self.offsets.get(m)
            where = "stamps matched no reference stamp" if offset is None else \
                f"its stamps are {offset_text(offset, self.reference)}"
            if received and not used:
                out.append(f"{m}: {received} messages, in no frame: {where} (another clock? set {m}.time_offset)")
            elif offset is not None and abs(offset) > OFF_CLOCK_S:
                out.append(f"{m}: in {used} frames, but paired with another instant: {where} "
                           f"(another clock? set {m}.time_offset)")
        return out

    def left_out_warnings(self) -> list[str]:
        """Sensors synchronized into frames the pipeline could not use them in (e.g. no CameraInfo)."""
        return [f"{m}: left out of {n} frames: {why}" for m, (n, why) in self.left_out.items()]

    def as_dict(self) -> dict:
        def stats(s: SubsetStats) -> dict:
            iou = s.confusion.compute() if s.confusion is not None else None
            return {"frames": s.frames,
                    "miou": None if iou is None else round(iou.miou_present, 4),
                    "miou_all": None if iou is None else round(iou.miou_all, 4),
                    "latency_ms_median": _median(s.latency_ms), "forward_ms_median": _median(s.forward_ms)}

        return {"subsets": {name: stats(s) for name, s in self.subsets.items()}, "overall": stats(self.overall),
                "messages": dict(self.messages), "rejected": dict(self.rejected), "reject_reasons": self.reasons,
                "dropped_by_schedule": dict(self.dropped_by_schedule), "skipped_frames": self.skipped_frames,
                "frames_without_ground_truth": self.unmatched_gt_frames, "wall_s": round(self.wall_s, 2),
                "sensors": {m: {"synchronized": r, "in_frames": u,
                                "left_out_of_frames": self.left_out.get(m, (0, ""))[0],
                                "stamp_offset_s": _round(self.offsets.get(m))}
                            for m, (r, u) in self.used.items()}, "offsets_relative_to": self.reference}

    def markdown(self) -> str:
        d = self.as_dict()
        lines = ["| subset | frames | mIoU (present classes) | mIoU (all 25) | latency ms (median) | model ms |",
                 "|---|---|---|---|---|---|"]
        for name, s in list(d["subsets"].items()) + [("**all frames**", d["overall"])]:
            miou = "n/a" if s["miou"] is None else f"{s['miou']:.1f}"
            miou_all = "n/a" if s["miou_all"] is None else f"{s['miou_all']:.1f}"
            lines.append(f"| {name} | {s['frames']} | {miou} | {miou_all} | {_fmt(s['latency_ms_median'])} | "
                         f"{_fmt(s['forward_ms_median'])} |")
        return "\n".join(lines)

    def sensor_markdown(self) -> str:
        """Per sensor: messages synchronized, frames it went into or was left out of, stamp offset."""
        lines = [f"| sensor | messages synchronized | in frames | left out of frames | stamp offset to "
                 f"{self.reference or 'the reference'} (s) | rejected |", "|---|---|---|---|---|---|"]
        for m, s in self.as_dict()["sensors"].items():
            offset = "reference" if m == self.reference else _fmt(s["stamp_offset_s"], 3)
            lines.append(f"| {m} | {s['synchronized']} | {s['in_frames']} | {s['left_out_of_frames']} | {offset} | "
                         f"{self.rejected.get(m, 0)} |")
        return "\n".join(lines)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 2) if values else None


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def stamp_ns(msg: Any) -> int:
    """Header stamp of a message (or SensorSample) in integer nanoseconds."""
    return conversions.stamp_to_ns(msg.header.stamp)


def count_messages(bag: Path, topics: set[str]) -> int | None:
    """Messages of `topics` in the bag, from its metadata (None where the storage does not record counts):
    the progress bar's total, since the frames a bag will give are only known once it is replayed."""
    with AnyReader([bag], default_typestore=get_typestore(Stores.LATEST)) as reader:
        total = sum(c.msgcount for c in reader.connections if c.topic in topics)
    return total or None


def read_in_stamp_order(bag: Path, topics: set[str], window_s: float = 1.0, counts: Counter | None = None,
                        undecodable: Counter | None = None) -> Iterator[tuple[str, Any, int, int]]:
    """Yield (topic, message, replay time ns, receive time ns) of `topics` in replay-time order.

    The replay time is the header stamp. Bags are stored in receive order; a heap releases a message
    once the receive time is `window_s` past its replay time, so memory stays bounded. A message
    stamped more than `window_s` after it was received (a clock running ahead: a wrong time zone, an
    unsynchronized computer) replays at its receive time + `window_s` instead: ordered by its stamp,
    it would hold the rest of the bag in memory and move the replay clock into its future."""
    heap: list[tuple[int, int, str, Any, int]] = []
    seq = 0
    window = int(window_s * 1e9)
    typestore = get_typestore(Stores.LATEST)
    with AnyReader([bag], default_typestore=typestore) as reader:
        wanted = [c for c in reader.connections if c.topic in topics]
        for connection, log_time, raw in reader.messages(connections=wanted):
            if counts is not None:
                counts[connection.topic] += 1
            try:
                msg = reader.deserialize(raw, connection.msgtype)
                key = min(stamp_ns(msg), log_time + window)
            except Exception:  # a foreign or corrupt message: counted, never fatal
                if undecodable is not None:
                    undecodable[connection.topic] += 1
                continue
            heapq.heappush(heap, (key, seq, connection.topic, msg, log_time))
            seq += 1
            while heap and heap[0][0] < log_time - window:
                key, _, topic, msg, received = heapq.heappop(heap)
                yield topic, msg, key, received
    while heap:
        key, _, topic, msg, received = heapq.heappop(heap)
        yield topic, msg, key, received


class BagEvaluator:
    """Drives the node's Engine with bag messages, the stamps as the clock; collects every result."""

    def __init__(self, predictor: Predictor, config: NodeConfig, topics: dict[str, str | None],
                 drop: list[Dropout] | None = None) -> None:
        self.engine = Engine(predictor, config)
        self.engine.pipeline.wait_for_graphs = True
        self.enabled = config.enabled
        self.topics = {k: v for k, v in topics.items() if v}
        self.by_topic = {v: k for k, v in self.topics.items()}
        self.drop = drop or []
        self.num_classes = len(predictor.class_names)
        self.gt: dict[int, np.ndarray] = {}
        self.results: list[Result] = []
        self.dropped_by_schedule: Counter = Counter()
        self.first_stamp: int | None = None
        self.clock = -float("inf")   # the replay clock: the newest replay time seen (s)
        self.lags: dict[str, list[float]] = {}  # sensor -> receive time minus stamp (s) of its messages

    def feed(self, topic: str, msg: Any, at_ns: int | None = None, received_ns: int | None = None) -> list[Result]:
        """One message in replay order (see read_in_stamp_order); returns the frames processed because of it.

        The clock advances only when a newer replay time (default: the stamp) arrives, and the
        engine is asked for frames then, so all messages of one instant are in before any frame of
        that instant fires (as with a live rig whose sensors publish together)."""
        key = self.by_topic.get(topic)
        stamp = stamp_ns(msg)
        if self.first_stamp is None:
            self.first_stamp = stamp
        if received_ns is not None and key in self.enabled:
            self.lags.setdefault(key, []).append((received_ns - stamp) * 1e-9)
        done: list[Result] = []
        at = (stamp if at_ns is None else at_ns) * 1e-9
        if at > self.clock:
            self.clock = at
            done = self._run(self.engine.due(self.clock))
        try:
            if key == "gt":
                self.gt[stamp] = conversions.image_to_numpy(msg)
            elif key is not None and key.endswith("_info"):
                self.engine.accept_camera_info(key[:-len("_info")], msg)
            elif key in self.enabled:
                if key in dropped_at(self.drop, (stamp - self.first_stamp) * 1e-9):
                    self.dropped_by_schedule[key] += 1
                else:
                    self.engine.accept(key, msg, self.clock)
        except conversions.ConversionError:
            pass  # counted by the engine, reported per sensor
        return done

    @property
    def rejected(self) -> Counter:
        """Messages rejected per sensor, and per camera's CameraInfo (`rgb_info`)."""
        c = self.engine.counters
        counts = Counter({m: n for m, n in c.rejected.items() if n})
        counts.update({f"{m}_info": n for m, n in c.info_rejected.items() if n})
        return counts

    def finish(self) -> list[Result]:
        """End of the bag: let pending timeouts expire, then release what is still buffered."""
        return self._run(self.engine.flush(self.clock + self.engine.config.sync.timeout))

    def _run(self, frames) -> list[Result]:
        done = []
        for frame in frames:
            try:
                done.append(self.engine.run(frame, self.clock))
            except FrameSkipped:
                continue
        self.results.extend(done)
        return done

    def report(self, wall_s: float, messages: Counter) -> BagReport:
        subsets: dict[str, SubsetStats] = {}
        overall = SubsetStats()
        unmatched = 0
        has_gt = bool(self.gt)
        order = self.engine.predictor.modalities
        for r in self.results:
            name = subset_name(r.subset, order)
            stats = subsets.setdefault(name, SubsetStats())
            truth = self.gt.get(stamp_ns(r.frame.data[r.frame.reference]))
            for s in (stats, overall):
                s.frames += 1
                s.latency_ms.append(r.encode_ms + r.forward_ms)
                s.forward_ms.append(r.forward_ms)
                if has_gt and s.confusion is None:
                    s.confusion = ConfusionMatrix(self.num_classes)
            if truth is None:
                unmatched += has_gt
                continue
            if truth.shape != r.labels.shape:
                truth = resize(truth, r.labels.shape, nearest=True)
            stats.confusion.update(r.labels, truth)
            overall.confusion.update(r.labels, truth)
        names = [subset_name(s, order) for s in all_subsets(order)]
        ordered = {name: subsets[name] for name in names if name in subsets}
        c = self.engine.counters
        used = {m: (st.received, c.in_frames[m]) for m, st in self.engine.sync.stats().items()}
        lags = {m: float(np.median(v)) for m, v in self.lags.items()}
        reference = next((m for m in self.engine.config.sync.modalities if m.name in lags), None)
        offsets = {} if reference is None else {m: lags[reference.name] - lag for m, lag in lags.items()
                                                if m != reference.name}
        left_out = {m: (n, c.left_out[m][1]) for m, n in c.left_out_frames.items()}
        reasons = {m: why for m, why in c.last_error.items() if why}
        reasons.update({f"{m}_info": why for m, why in c.info_error.items() if why})
        return BagReport(ordered, overall, messages, self.rejected, reasons, self.dropped_by_schedule,
                         c.frames_skipped, unmatched, wall_s, used, offsets, reference and reference.name, left_out)


PREDICTION_OUTPUTS = ("mask", "color_mask", "camera_info", "labeled_points")  # written as /charm/<name>


def write_predictions(out: Path, results: list[Result], palette: np.ndarray, storage: str = "mcap") -> None:
    """/charm/mask (mono8), /charm/color_mask (rgb8), /charm/camera_info and /charm/labeled_points (frames
    with LiDAR), built as the node builds them."""
    from rclpy.serialization import serialize_message

    typestore = get_typestore(Stores.ROS2_KILTED)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(out, version=8, storage_plugin=plugin) as writer:
        conns = {name: writer.add_connection(f"/charm/{name}", f"sensor_msgs/msg/{OUTPUT_TYPES[name]}",
                                             typestore=typestore) for name in PREDICTION_OUTPUTS}
        for r in results:
            t = stamp_ns(r.frame.data[r.frame.reference])
            for name, msg in output_messages(r, PREDICTION_OUTPUTS, palette).items():
                writer.write(conns[name], t, serialize_message(msg))


def load_topics(args: argparse.Namespace, keys: tuple[str, ...] = TOPIC_KEYS) -> tuple[dict[str, str | None], set[str]]:
    """The topic of each key, and the keys the user named (flags or --topics), which must be in the bag."""
    topics = default_topics(keys)
    named: set[str] = set()
    if args.topics:
        given = yaml.safe_load(Path(args.topics).read_text()) or {}
        unknown = sorted(set(given) - set(keys))
        if unknown:
            raise ValueError(f"{args.topics}: unknown keys {unknown}; expected {list(keys)}")
        topics.update(given)
        named.update(given)
    for key in keys:
        value = getattr(args, key.replace("-", "_"), None)
        if value is not None:
            topics[key] = value or None   # an empty string disables the topic
            named.add(key)
    return topics, {k for k in named if topics[k]}


def sensors_of_checkpoint(argv: list[str] | None, default: str) -> tuple[tuple, ValueError | None]:
    """The node's sensors for the --checkpoint on the command line (it decides which sensor flags
    exist), read before the full parse; an unreadable checkpoint is reported after it (--help works)."""
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--checkpoint", default=default)
    try:
        return node_sensors(read_modality_specs(first.parse_known_args(argv)[0].checkpoint)), None
    except ValueError as exc:
        return DELIVER_SENSORS, exc


@contextmanager
def cli_errors(parser: argparse.ArgumentParser, bag: Path) -> Iterator[None]:
    """A user's mistake (an unreadable bag or checkpoint, a topic the bag lacks, a bad parameter file)
    ends charm-bag-eval / charm-bag-export with one line and exit 2, not a traceback."""
    try:
        yield
    except AnyReaderError as exc:
        parser.error(f"cannot read the bag {bag}: {exc}")
    except (OSError, ValueError, KeyError) as exc:
        parser.error(str(exc))


def replay_settings(args: argparse.Namespace, keys: tuple[str, ...], sensors: tuple,
                    sensor_error: ValueError | None) -> tuple[dict[str, str | None], set[str], NodeConfig]:
    """(topics, topics the user named, node config) of a replay tool's command line: the node's own
    parameter file validated for the checkpoint's sensors."""
    if sensor_error is not None:
        raise sensor_error
    topics, named = load_topics(args, keys)
    return topics, named, validate(load_param_file(args.params), sensors)


def add_topic_arguments(parser: argparse.ArgumentParser, keys: tuple[str, ...]) -> None:
    """--topics FILE and one flag per topic key (shared by charm-bag-eval and charm-bag-export)."""
    defaults = default_topics(keys)
    parser.add_argument("--topics", help=f"YAML mapping of {'/'.join(keys)} to topics")
    for key in keys:
        parser.add_argument(f"--{_flag(key)}", dest=key, help=f"topic of {key} (default {defaults[key]}; '' = none)")


def check_topics(bag: Path, topics: dict[str, str | None], named: set[str]) -> None:
    """A topic the user named that the bag lacks is an error listing the bag's topics; a default one
    is a warning (with how to turn it off), since a user's bag has its own names."""
    with AnyReader([bag], default_typestore=get_typestore(Stores.LATEST)) as reader:
        recorded = sorted({c.topic for c in reader.connections})
    absent = {k: t for k, t in topics.items() if t and t not in recorded}
    wrong = [f"--{_flag(k)} {t}" for k, t in absent.items() if k in named]
    if wrong:
        raise ValueError(f"not in the bag: {', '.join(wrong)}; the bag has {', '.join(recorded) or 'no topics'}")
    for key, topic in absent.items():
        print(f"charm-bag-eval: the default {key} topic {topic} is not in the bag (set --{_flag(key)} to its "
              f"topic, or --{_flag(key)} '' for none); the bag has {', '.join(recorded)}", file=sys.stderr)


def _flag(key: str) -> str:
    """--camera-info (rgb's), --depth-camera-info, --thermal-camera-info, --thermal ..."""
    if key == "rgb_info":
        return "camera-info"
    return f"{key[:-len('_info')]}-camera-info" if key.endswith("_info") else key


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
        predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device, backend=args.backend)
        if not args.bag.exists():
            raise FileNotFoundError(f"no bag at {args.bag}")
        if args.write_predictions and args.write_predictions.exists():
            raise FileExistsError(f"{args.write_predictions} exists")
        check_topics(args.bag, topics, named)
        evaluator = BagEvaluator(predictor, config, topics, drop)
        total = count_messages(args.bag, set(evaluator.topics.values()))
    messages: Counter = Counter()
    undecodable: Counter = Counter()
    start = time.perf_counter()
    stream = read_in_stamp_order(args.bag, set(evaluator.topics.values()), args.reorder_window, messages, undecodable)
    frames = 0
    with tqdm(total=total, desc="charm-bag-eval", unit="msg") as bar:
        for topic, msg, at, received in stream:
            frames += len(evaluator.feed(topic, msg, at, received))
            bar.set_postfix(frames=frames, refresh=False)
            bar.update(sum(messages.values()) - bar.n)  # read so far, undecodable ones included
        bar.set_postfix(frames=frames + len(evaluator.finish()))
    report = evaluator.report(time.perf_counter() - start, messages)
    report.rejected.update({f"undecodable {t}": n for t, n in undecodable.items()})
    print(f"\n{args.bag}: {report.overall.frames} frames in {report.wall_s:.1f} s on {predictor.backend} "
          f"(rejected: {dict(report.rejected) or 'none'}; dropped by --dropouts: {dict(report.dropped_by_schedule) or 'none'})\n")
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
