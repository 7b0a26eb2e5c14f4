"""Fault benchmark (issue 29): what a lying sensor costs CHARM, and what the node's content-health policy
wins back, on the synthetic world's held-out seed.

Per checkpoint, one table: every sensor x fault and the DELIVER cases, mIoU (present classes) over the
faulted frames with the fault kept, with the sensor excluded, and with the node's policy; frames where
a clean sensor was left out; detection and recovery delay at 10 Hz. Then the checks' cost per frame at
256x256 and 1280x720. Each condition is one drive of `--frames` frames at 10 Hz; the fault covers the
middle of it (`FAULT_SPAN`), so the monitor sees clean frames before and after (recovery).

The frames take the node's path: the node's Pipeline (its encoders and Predictor, the node's default
parameters) on the converted arrays, and the node's ContentHealth monitor deciding the subset of each
frame. Predictions are deterministic per subset, so the policy's frame is the kept or the excluded
prediction of that frame (another subset, after a false exclusion, is run).

    .venv/bin/python bench/fault_benchmark.py                 # 60 frames x 5 conditions per drive
    .venv/bin/python bench/fault_benchmark.py --frames 20     # a quick look
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from charm_core.checkpoint import read_modality_specs
from charm_core.data.synthetic import CASES, CONDITIONS
from charm_core.data.synthetic.render_ahead import render_ahead
from charm_core.inference import Predictor
from charm_core.metrics import ConfusionMatrix
from charm_ros.runtime.content_health import ContentHealth, HealthConfig
from charm_ros.runtime.faults import FaultInjector, parse_faults
from charm_ros.runtime.node_config import node_sensors, validate
from charm_ros.runtime.pipeline import Pipeline, SensorSample
from charm_ros.runtime.sync import Frame

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ("models/charm_tiny_synthetic.safetensors", "models/charm_tiny_thermal_synthetic.safetensors")
HELD_OUT_SEED = 1000
FPS = 10.0
FAULT_SPAN = (0.15, 0.85)   # the fault covers this part of every drive
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
    policy_excluded: int = 0         # faulted frames the policy ran without the sensor
    detect_s: list[float] = field(default_factory=list)
    recover_s: list[float] = field(default_factory=list)


def sensor_arrays(frame, sensors: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {m: getattr(frame, m) for m in sensors}


def render(condition: str, case: str | None, count: int, thermal: bool) -> list:
    return render_ahead(dict(seed=HELD_OUT_SEED, size_hw=(256, 256), condition=condition, case=case, fps=FPS,
                             thermal=thermal), count, workers=2)


class Bench:
    def __init__(self, checkpoint: str, backend: str) -> None:
        self.sensors = tuple(s.name for s in read_modality_specs(checkpoint))
        self.predictor = Predictor.from_checkpoint(ROOT / checkpoint, device="cpu", backend=backend)
        config = validate({}, node_sensors(read_modality_specs(checkpoint)))
        self.pipeline = Pipeline.for_node(self.predictor, config.pipeline, config.enabled)
        self.pipeline.wait_for_graphs = True
        self.classes = len(self.predictor.class_names)
        self.cache: dict[tuple, np.ndarray] = {}
        self.forwards = 0

    def predict(self, arrays: dict[str, np.ndarray], K: np.ndarray, t: float, key: tuple | None = None) -> np.ndarray:
        """Labels of the node's pipeline on these arrays (cached under `key` when given)."""
        if key is not None and key in self.cache:
            return self.cache[key]
        for camera in ("rgb", "depth", "thermal"):
            if camera in self.sensors:
                self.pipeline.set_camera(camera, K, (256, 256))
        data = {m: SensorSample(arrays[m], t, "camera") for m in self.sensors if m in arrays}
        frame = Frame(stamp=t, reference=next(iter(data)), data=data, stamps={m: t for m in data})
        labels = self.pipeline.process(frame).labels
        self.forwards += 1
        if key is not None:
            self.cache[key] = labels
        return labels

    def drive(self, row: Row, drives: dict[str, list], fault: str | None, case: str | None) -> None:
        """Every condition's drive through a fresh monitor; faulted frames scored three ways."""
        sensor = row.sensor
        for condition, frames in drives.items():
            n = len(frames)
            start, end = (round(FAULT_SPAN[0] * n) / FPS, round(FAULT_SPAN[1] * n) / FPS) if fault else (0.0, n / FPS)
            injector = FaultInjector(parse_faults(f"{sensor}:{fault}:{start}-{end}", self.sensors) if fault else [],
                                     seed=HELD_OUT_SEED)
            health = ContentHealth(HealthConfig())
            detected = recovered = None
            for k, frame in enumerate(frames):
                t = k / FPS
                arrays = {m: injector.apply(m, a, t) for m, a in sensor_arrays(frame, self.sensors).items()}
                for m, a in arrays.items():
                    health.observe(m, a, stamp=100.0 + t)
                out = set(health.excluded())
                faulted = start <= t < end
                if out - {sensor} if fault else out:
                    row.false_exclusions += 1
                verdict = health.verdict(sensor)
                reported = verdict is not None and bool(verdict.fault.kind)
                if fault and faulted and reported and detected is None:
                    detected = t - start
                if fault and t >= end and not reported and recovered is None:
                    recovered = t - end
                if not faulted:
                    continue
                row.frames += 1
                truth = frame.labels
                base = (case, condition, k)
                kept = self.predict(arrays, frame.K, t, None if fault else base + ("all",))
                excluded = kept if row.name.startswith("clean") else self.predict(
                    {m: a for m, a in arrays.items() if m != sensor}, frame.K, t, base + ("without", sensor))
                if out == {sensor}:
                    policy, row.policy_excluded = excluded, row.policy_excluded + 1
                elif not out:
                    policy = kept
                else:
                    policy = self.predict({m: a for m, a in arrays.items() if m not in out}, frame.K, t)
                row.kept.update(kept, truth)
                row.excluded.update(excluded, truth)
                row.policy.update(policy, truth)
            if fault:
                row.detect_s.append(np.inf if detected is None else detected)
                row.recover_s.append(np.inf if recovered is None else recovered)

    def row(self, name: str, sensor: str) -> Row:
        return Row(name, sensor, *(ConfusionMatrix(self.classes) for _ in range(3)))


def miou(c: ConfusionMatrix) -> float:
    return c.compute().miou_present


def delay(values: list[float]) -> str:
    if not values:
        return ""
    worst = max(values)
    return "never" if np.isinf(worst) else f"{np.median(values):.1f} / {worst:.1f}"


def table(rows: list[Row], clean: Row) -> str:
    lines = ["| sensor | fault | frames | kept | excluded | policy | policy - max | recovered | left out by policy "
             "| false exclusions | reported after s (median / worst) | healthy after s (median / worst) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        kept, excluded, policy = miou(r.kept), miou(r.excluded), miou(r.policy)
        loss = excluded - kept
        recovered = f"{100 * (policy - kept) / loss:.0f}%" if loss > 1.0 else ""
        sensor, fault = r.name.split(":")
        lines.append(f"| {sensor} | {fault} | {r.frames} | {kept:.1f} | {excluded:.1f} | {policy:.1f} | "
                     f"{policy - max(kept, excluded):+.1f} | {recovered} | {r.policy_excluded / r.frames:.0%} | "
                     f"{r.false_exclusions} | {delay(r.detect_s)} | {delay(r.recover_s)} |")
    lines.append(f"| clean | (all five conditions) | {clean.frames} | {miou(clean.kept):.1f} | | "
                 f"{miou(clean.policy):.1f} | | | | {clean.false_exclusions} | | |")
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
    scale = np.diag([size[1] / 256, size[0] / 256, 1.0])
    times = []
    for frame in frames:
        arrays = {m: a if m == "lidar" else cv2.resize(a, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
                  for m, a in sensor_arrays(frame, bench.sensors).items()}
        K = scale @ frame.K
        for camera in ("rgb", "depth", "thermal"):
            if camera in bench.sensors:
                bench.pipeline.set_camera(camera, K, size)
        data = {m: SensorSample(arrays[m], 1.0, "camera") for m in bench.sensors}
        begin = time.perf_counter()
        bench.pipeline.process(Frame(1.0, bench.sensors[0], data, {m: 1.0 for m in data}))
        times.append(time.perf_counter() - begin)
    return 1e3 * float(np.median(times))


def run_checkpoint(checkpoint: str, args: argparse.Namespace, clean_drives: dict, case_drives: dict) -> str:
    bench = Bench(checkpoint, args.backend)
    sensors = bench.sensors
    begin = time.perf_counter()
    clean = bench.row("clean:none", sensors[0])
    bench.drive(clean, clean_drives, None, None)
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
