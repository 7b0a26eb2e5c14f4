"""Fault benchmark (issue 29): what a lying sensor costs CHARM, and what the node's content-health policy
wins back, on the synthetic world's held-out seed.

Per checkpoint, one table: every sensor x fault and the DELIVER cases, mIoU (present classes) over the
faulted frames with the fault kept, with the sensor excluded, and with the node's policy; frames where
a clean sensor was left out, and by which sensor and finding; detection and recovery delay at 10 Hz.
Then the checks' cost per frame at 256x256 and 1280x720. Each condition is one drive of `--frames`
frames at 10 Hz; the fault covers the middle of it (`FAULT_SPAN`), so the monitor sees clean frames
before and after (recovery).

The policy is the node's code path: each rendered frame becomes the rig's ROS messages
(`sim_rig.frame_messages`), fed to a fresh node Engine per drive (`Engine.accept` with the header
stamps as the clock, `Engine.due` / `run` for the frames the synchronizer releases, `Engine.faults`
injecting the fault), so its subsets, detection and recovery are the Engine's own. *kept* and
*excluded* run the same Engine pipeline on the arrays the Engine saw with and without the sensor.
Predictions are deterministic per frame and subset, so model runs are shared (see `Bench.cached`).

    .venv/bin/python bench/fault_benchmark.py                 # 60 frames x 5 conditions per drive
    .venv/bin/python bench/fault_benchmark.py --frames 20     # a quick look
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from builtin_interfaces.msg import Time

from charm_core.checkpoint import read_modality_specs
from charm_core.data.augment import resize
from charm_core.data.synthetic import CASES, CONDITIONS
from charm_core.data.synthetic.render_ahead import render_ahead
from charm_core.inference import Predictor
from charm_core.metrics import ConfusionMatrix
from charm_ros.runtime.content_health import ContentHealth
from charm_ros.runtime.engine import Engine
from charm_ros.msgs.fields import ConversionError
from charm_ros.runtime.faults import FaultInjector, parse_faults
from charm_ros.runtime.node_config import node_sensors, validate
from charm_ros.runtime.pipeline import Encoded, FrameSkipped, Result, SensorSample
from charm_ros.runtime.sync import Frame
from charm_ros.tools.sim_rig import INFO_TOPICS, SENSOR_TOPICS, RigEncoding, frame_messages

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ("models/charm_tiny_synthetic.safetensors", "models/charm_tiny_thermal_synthetic.safetensors")
HELD_OUT_SEED = 1000
FPS = 10.0
START_S = 100.0             # header stamp of a drive's first frame
FAULT_SPAN = (0.15, 0.85)   # the fault covers this part of every drive (4.2 s of a 6 s drive)
ROWS = {
    "depth": ("frozen", "frozen_old", "frozen_jitter", "saturated", "noise", "covered"),
    "lidar": ("frozen", "frozen_old", "frozen_jitter", "sparse", "noise"),
    "rgb": ("frozen", "frozen_old", "black", "saturated", "noise", "covered"),
    "event": ("frozen", "saturated", "noise"),
    "thermal": ("frozen", "frozen_jitter", "flat", "noise"),
}
CASE_SENSOR = {"motionblur": "rgb", "overexposure": "rgb", "underexposure": "rgb", "lidarjitter": "lidar",
               "eventlowres": "event"}


@dataclass
class Row:
    """One sensor x fault (or DELIVER case) over all conditions."""

    name: str
    sensor: str
    kept: ConfusionMatrix
    excluded: ConfusionMatrix
    policy: ConfusionMatrix
    frames: int = 0
    false_exclusions: int = 0        # frames where a sensor other than the faulted one was left out
    causes: Counter = field(default_factory=Counter)  # "sensor finding" -> frames it was falsely left out of
    policy_excluded: int = 0         # faulted frames the policy ran without the sensor
    detect_s: list[float] = field(default_factory=list)
    recover_s: list[float] = field(default_factory=list)


class RecordingInjector(FaultInjector):
    """The Engine's fault injector, remembering what each sensor reported at each frame, so that *kept*
    and *excluded* run on exactly the arrays the Engine judged."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: dict[tuple[str, int], np.ndarray] = {}

    def apply(self, sensor: str, array: np.ndarray, t: float) -> np.ndarray:
        out = super().apply(sensor, array, t)
        self.seen[(sensor, round(t * FPS))] = out
        return out


def sensor_arrays(frame, sensors: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {m: getattr(frame, m) for m in sensors}


def render(condition: str, case: str | None, count: int, thermal: bool) -> list:
    return render_ahead(dict(seed=HELD_OUT_SEED, size_hw=(256, 256), condition=condition, case=case, fps=FPS,
                             thermal=thermal), count, workers=2)


def stamp_of(k: int) -> Time:
    ns = round((START_S + k / FPS) * 1e9)
    return Time(sec=ns // 10 ** 9, nanosec=ns % 10 ** 9)


class Bench:
    def __init__(self, checkpoint: str, backend: str) -> None:
        specs = read_modality_specs(checkpoint)
        self.sensors = tuple(s.name for s in specs)
        self.predictor = Predictor.from_checkpoint(ROOT / checkpoint, device="cpu", backend=backend)
        self.config = validate({}, node_sensors(specs))   # the node's default parameters
        self.encoding = RigEncoding()
        self.classes = len(self.predictor.class_names)
        self.cache: dict[tuple, np.ndarray] = {}
        self.forwards = 0
        self.drive_key: tuple = ()
        self.fault_tag: Callable[[int, tuple[str, ...]], str | None] = lambda k, subset: None

    def engine(self, injector: FaultInjector) -> Engine:
        """A fresh node Engine (the node's default parameters) whose model runs are shared through the cache."""
        engine = Engine(self.predictor, self.config)
        engine.pipeline.wait_for_graphs = True
        engine.pipeline.predict = self.cached(engine.pipeline.predict)  # same model, shared runs
        engine.faults = injector
        return engine

    def key(self, k: int, subset: tuple[str, ...]) -> tuple:
        """A frame's prediction depends on its drive, index, subset and whether a faulted array is in it."""
        return self.drive_key, k, subset, self.fault_tag(k, subset)

    def cached(self, predict: Callable[[Frame, Encoded], Result]) -> Callable[[Frame, Encoded], Result]:
        """`Pipeline.predict` answering from the cache when this frame and subset ran before (with the same
        arrays): a policy frame is usually the kept or the excluded one, so the Engine's runs cost no
        second forward."""
        def run(frame: Frame, encoded: Encoded) -> Result:
            subset = tuple(m for m in self.sensors if m in encoded.images)
            key = self.key(round((frame.stamp - START_S) * FPS), subset)
            labels = self.cache.get(key)
            if labels is None:
                result = predict(frame, encoded)
                self.forwards += 1
                self.cache[key] = result.labels
                return result
            return Result(frame, subset, labels, np.empty(0, np.float32), np.empty(0, np.uint8), None,
                          np.eye(4), encoded.skipped, encoded.encode_ms, 0.0)
        return run

    def labels(self, engine: Engine, arrays: dict[str, np.ndarray], k: int) -> np.ndarray:
        """The Engine's pipeline on these arrays of frame k (from the cache when they ran before)."""
        subset = tuple(m for m in self.sensors if m in arrays)
        labels = self.cache.get(self.key(k, subset))
        if labels is not None:
            return labels
        stamp = START_S + k / FPS
        data = {m: SensorSample(arrays[m], stamp, "camera") for m in subset}
        return engine.pipeline.process(Frame(stamp, subset[0], data, {m: stamp for m in data})).labels

    def drive(self, row: Row, drives: dict[str, list], fault: str | None, case: str | None) -> None:
        """Every condition's drive through a fresh Engine; faulted frames scored three ways."""
        sensor = row.sensor
        for condition, frames in drives.items():
            n = len(frames)
            first, last = (round(FAULT_SPAN[0] * n), round(FAULT_SPAN[1] * n)) if fault else (0, n)
            faulted = range(first, last)
            # boundaries half a frame early: the Engine's time is a difference of stamps (100 + 5.1 - 100 =
            # 5.0999...), which at a whole frame's time could fall on either side of it
            span = f"{(first - 0.5) / FPS}-{(last - 0.5) / FPS}"
            schedule = parse_faults(f"{sensor}:{fault}:{span}", self.sensors) if fault else []
            injector = RecordingInjector(schedule, seed=HELD_OUT_SEED)
            engine = self.engine(injector)
            self.drive_key = (case, condition)
            self.fault_tag = (lambda k, subset: row.name if k in faulted and sensor in subset else None) \
                if fault else (lambda k, subset: None)
            findings: dict[int, dict[str, str]] = {}
            results: list[Result] = []
            detected = recovered = None
            for k, frame in enumerate(frames):
                now = START_S + k / FPS
                results += self.run(engine, engine.due(now), now)
                messages = frame_messages(frame, stamp_of(k), self.sensors, self.encoding)
                for m in self.sensors:
                    try:
                        if m in INFO_TOPICS:
                            engine.accept_camera_info(m, messages[INFO_TOPICS[m]])
                        engine.accept(m, messages[SENSOR_TOPICS[m]], now)
                    except ConversionError:
                        pass  # counted by the Engine; the frame goes on without it, as in the node
                findings[k] = {m: v.fault.kind for m in self.sensors if (v := engine.content.verdict(m))}
                reported = bool(findings[k].get(sensor))
                if fault and k in faulted and reported and detected is None:
                    detected = (k - first) / FPS
                if fault and k >= last and not reported and recovered is None:
                    recovered = (k - last) / FPS
            results += self.run(engine, engine.flush(now + engine.config.sync.timeout), now)
            for result in results:
                self.score(row, engine, injector, frames, result, findings[k], condition, fault)
            self.cache = {key: labels for key, labels in self.cache.items() if key[3] is None}  # the row's own
            if fault:
                row.detect_s.append(np.inf if detected is None else detected)
                row.recover_s.append(np.inf if recovered is None else recovered)

    @staticmethod
    def run(engine: Engine, frames: list[Frame], now: float) -> list[Result]:
        out = []
        for frame in frames:
            try:
                out.append(engine.run(frame, now))
            except FrameSkipped:
                continue
        return out

    def score(self, row: Row, engine: Engine, injector: RecordingInjector, frames: list, result: Result,
              findings: dict[str, str], condition: str, fault: str | None) -> None:
        """One frame the Engine ran: its false exclusions (with their cause) and, when the fault acts on
        it (every frame of a clean or DELIVER row), the kept / excluded / policy scores."""
        k = round((result.frame.stamp - START_S) * FPS)
        sensor = row.sensor
        missing = set(self.sensors) - set(result.subset) - ({sensor} if fault else set())
        if missing:
            row.false_exclusions += 1
            row.causes.update(f"{m} {findings.get(m) or 'not in frame'} ({condition})" for m in missing)
        if fault and self.fault_tag(k, (sensor,)) is None:
            return
        row.frames += 1
        truth = frames[k].labels
        arrays = {m: injector.seen[(m, k)] for m in self.sensors}
        kept = self.labels(engine, arrays, k)
        excluded = kept if row.name.startswith("clean") else self.labels(
            engine, {m: a for m, a in arrays.items() if m != sensor}, k)
        if set(result.subset) == set(self.sensors) - {sensor}:
            row.policy_excluded += 1
        for matrix, labels in ((row.kept, kept), (row.excluded, excluded), (row.policy, result.labels)):
            matrix.update(labels, truth if truth.shape == labels.shape else resize(truth, labels.shape, nearest=True))

    def row(self, name: str, sensor: str) -> Row:
        return Row(name, sensor, *(ConfusionMatrix(self.classes) for _ in range(3)))


def miou(c: ConfusionMatrix) -> float:
    return c.compute().miou_present


def delay(values: list[float]) -> str:
    if not values:
        return ""
    worst = max(values)
    return "never" if np.isinf(worst) else f"{np.median(values):.1f} / {worst:.1f}"


def causes(row: Row) -> str:
    """Which sensor and finding left a clean sensor out, in how many frames: 'event frozen (fog): 3'."""
    return ", ".join(f"{cause}: {n}" for cause, n in row.causes.most_common())


def table(rows: list[Row], clean: list[Row]) -> str:
    lines = ["| sensor | fault | frames | kept | excluded | policy | policy - max | recovered | left out by policy "
             "| false exclusions | left out by (frames) | reported after s (median / worst) "
             "| healthy after s (median / worst) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for r in rows:
        kept, excluded, policy = miou(r.kept), miou(r.excluded), miou(r.policy)
        loss = excluded - kept
        recovered = f"{100 * (policy - kept) / loss:.0f}%" if loss > 1.0 else ""
        sensor, fault = r.name.split(":")
        lines.append(f"| {sensor} | {fault} | {r.frames} | {kept:.1f} | {excluded:.1f} | {policy:.1f} | "
                     f"{policy - max(kept, excluded):+.2f} | {recovered} | {r.policy_excluded / r.frames:.0%} | "
                     f"{r.false_exclusions} | {causes(r)} | {delay(r.detect_s)} | {delay(r.recover_s)} |")
    for r in clean:
        lines.append(f"| clean | {r.name.split(':')[1]} | {r.frames} | {miou(r.kept):.1f} | | {miou(r.policy):.1f} "
                     f"| | | | {r.false_exclusions} | {causes(r)} | | |")
    return "\n".join(lines)


def check_cost(drives: dict[str, list], sensors: tuple[str, ...], size: tuple[int, int] | None) -> float:
    """Milliseconds per frame (all sensors) of the content checks, on images resized to `size`."""
    health, spent, count = ContentHealth(), 0.0, 0
    for frames in drives.values():
        for k, frame in enumerate(frames):
            arrays = sensor_arrays(frame, sensors)
            if size is not None:
                arrays = {m: a if m == "lidar" else cv2.resize(a, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
                          for m, a in arrays.items()}
            begin = time.perf_counter()
            for m, a in arrays.items():
                health.observe(m, a, stamp=k / FPS)
            spent += time.perf_counter() - begin
            count += 1
    return 1e3 * spent / count


def node_frame_ms(bench: Bench, drives: dict[str, list], size: tuple[int, int], count: int = 10) -> float:
    """Median milliseconds of the node's pipeline (encode + model) on one frame with `size` camera images."""
    frames = next(iter(drives.values()))[:count]
    pipeline = Engine(bench.predictor, bench.config).pipeline
    pipeline.wait_for_graphs = True
    scale = np.diag([size[1] / 256, size[0] / 256, 1.0])
    times = []
    for frame in frames:
        arrays = {m: a if m == "lidar" else cv2.resize(a, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
                  for m, a in sensor_arrays(frame, bench.sensors).items()}
        K = scale @ frame.K
        for camera in ("rgb", "depth", "thermal"):
            if camera in bench.sensors:
                pipeline.set_camera(camera, K, size)
        data = {m: SensorSample(arrays[m], 1.0, "camera") for m in bench.sensors}
        begin = time.perf_counter()
        pipeline.process(Frame(1.0, bench.sensors[0], data, {m: 1.0 for m in data}))
        times.append(time.perf_counter() - begin)
    return 1e3 * float(np.median(times))


def run_checkpoint(checkpoint: str, args: argparse.Namespace, clean_drives: dict, case_drives: dict) -> str:
    bench = Bench(checkpoint, args.backend)
    sensors = bench.sensors
    begin = time.perf_counter()
    clean = [bench.row(f"clean:{condition}", sensors[0]) for condition in clean_drives]
    for row, (condition, frames) in zip(clean, clean_drives.items()):
        bench.drive(row, {condition: frames}, None, None)
    total = sum(r.false_exclusions for r in clean)
    print(f"  clean: {total} of {sum(r.frames for r in clean)} frames with a sensor left out "
          f"({time.perf_counter() - begin:.0f} s)", flush=True)
    rows = []
    for sensor in sensors:
        for fault in ROWS[sensor]:
            if args.only and f"{sensor}:{fault}" not in args.only:
                continue
            row = bench.row(f"{sensor}:{fault}", sensor)
            bench.drive(row, clean_drives, fault, None)
            rows.append(row)
            print(f"  {row.name}: {miou(row.kept):.1f} / {miou(row.excluded):.1f} / {miou(row.policy):.1f} "
                  f"({time.perf_counter() - begin:.0f} s, {bench.forwards} model runs)", flush=True)
    deliver = []
    for case, drives in case_drives.items():
        row = bench.row(f"{CASE_SENSOR[case]}:DELIVER {case}", CASE_SENSOR[case])
        bench.drive(row, drives, None, case)
        deliver.append(row)
        print(f"  {row.name}: {row.false_exclusions} of {row.frames} frames with a sensor left out", flush=True)
    lines = [f"## {checkpoint} (backend {bench.predictor.backend}, seed {HELD_OUT_SEED}, "
             f"{sum(map(len, clean_drives.values()))} clean frames over {len(clean_drives)} conditions, "
             f"{bench.forwards} model runs in {time.perf_counter() - begin:.0f} s)", "",
             table(rows + deliver, clean), ""]
    cost_small = check_cost(clean_drives, sensors, None)
    cost_large = check_cost({c: f[:10] for c, f in clean_drives.items()}, sensors, (720, 1280))
    node_large = node_frame_ms(bench, clean_drives, (720, 1280))
    lines.append(f"Checks' cost per frame ({'+'.join(sensors)}): {cost_small:.2f} ms at 256x256; {cost_large:.2f} ms "
                 f"at 1280x720, against {node_large:.0f} ms of the node's pipeline (encode + model) on such a frame "
                 f"({100 * cost_large / node_large:.1f}%).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60, help="frames per condition (and per DELIVER case)")
    parser.add_argument("--backend", default="onnxruntime", help="torch or onnxruntime (graphs from the cache)")
    parser.add_argument("--checkpoints", nargs="+", default=list(CHECKPOINTS))
    parser.add_argument("--only", nargs="*", help="rows to run, e.g. depth:frozen rgb:black")
    args = parser.parse_args()
    begin = time.perf_counter()
    thermal = any("thermal" in c for c in args.checkpoints)
    clean_drives = {c: render(c, None, args.frames, thermal) for c in CONDITIONS}
    per_condition = max(2, args.frames // len(CONDITIONS))
    case_drives = {case: {c: render(c, case, per_condition, thermal) for c in CONDITIONS} for case in CASES}
    print(f"rendered in {time.perf_counter() - begin:.0f} s", flush=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"# Fault benchmark: {time.strftime('%Y-%m-%d %H:%M')}, commit {commit}, {cpu}, --frames {args.frames}\n")
    for checkpoint in args.checkpoints:
        print(run_checkpoint(checkpoint, args, clean_drives, case_drives), flush=True)
        print()


if __name__ == "__main__":
    main()
