"""`charm-demo-report`: watches the node on the synthetic rig and reports each dropout and fault phase.

It subscribes to the node's masks and subset and to the rig's ground truth, splits the run into the
phases of the rig's dropout and fault schedules, and prints per phase: the sensors live, the content
faults active, the subset the node used, output rate, end-to-end latency and mIoU against the ground
truth. At the end it writes a JSON
summary and a contact sheet (per phase the RGB input, each single-channel camera's such as thermal,
ground truth, prediction) and exits, which ends the demo.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from charm_core.classes import DELIVER_CLASSES, colorize
from charm_core.data.augment import resize
from charm_core.data.base import encode_stored
from charm_core.metrics import ConfusionMatrix
from charm_core.modalities import MODALITIES, resolve_modalities
from charm_ros.msgs import fields, images
from charm_ros.runtime.node_config import CAMERA_KINDS
from charm_ros.runtime.dropouts import Phase, modality_list, parse_dropouts, phases
from charm_ros.runtime.faults import parse_faults
from charm_ros.runtime.parameters import ParamSpec
from charm_ros.node.host import declare, run_node
from charm_core.visualize import confidence_to_mono8, contact_sheet


@dataclass
class PhaseStats:
    phase: Phase
    subsets: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    confusion: ConfusionMatrix = field(default_factory=lambda: ConfusionMatrix(len(DELIVER_CLASSES)))
    first_switch_s: float | None = None   # phase start -> first mask on the phase's expected subset
    times: list[float] = field(default_factory=list)  # rig time of every scored mask
    sample: tuple[np.ndarray, ...] | None = None  # rgb, each single-channel camera, truth, prediction

    @property
    def masks(self) -> int:
        return len(self.times)


REPORT_PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("duration", 40.0, "seconds of rig time to watch"),
    ParamSpec("dropouts", "", "the rig's dropout schedule"),
    ParamSpec("faults", "", "the rig's content fault schedule (a faulted sensor is expected out of the subset)"),
    ParamSpec("modalities", ",".join(MODALITIES), "the rig's sensors, in the checkpoint's order (phases are named "
              "as the node names its ~/subset)"),
    ParamSpec("output_dir", "out/demo", "where the summary JSON and contact sheet go"),
)


class DemoReport(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("demo_report", **kwargs)
        p = declare(self, REPORT_PARAMETERS)
        self.duration = p["duration"]
        modalities = modality_list(p["modalities"])
        self.phases = phases(parse_dropouts(p["dropouts"], modalities), self.duration, modalities,
                             parse_faults(p["faults"], modalities))
        # single-channel cameras (thermal) shown beside RGB, as their spec normalises them for the network
        self.cameras = {s.name: s for s in resolve_modalities(modalities) if s.kind in CAMERA_KINDS}
        self.camera_images: dict[str, dict[int, np.ndarray]] = {m: {} for m in self.cameras}
        self.out_dir = Path(p["output_dir"])
        self.stats = [PhaseStats(ph) for ph in self.phases]
        self.truth: dict[int, np.ndarray] = {}
        self.rgb: dict[int, np.ndarray] = {}
        self.rig_time: dict[int, float] = {}    # frame stamp -> seconds since the rig started
        self.pending: dict[int, tuple[np.ndarray, float, str]] = {}
        self.subset = ""
        self.started: float | None = None      # node clock when the rig's first frame was seen
        self.done = False
        sensor = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)
        reliable = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(Image, "~/ground_truth", self._on_truth, sensor)
        self.create_subscription(Image, "~/rgb", self._on_rgb, sensor)
        for m in self.cameras:
            self.create_subscription(Image, f"~/{m}", lambda msg, m=m: self._on_camera(m, msg), sensor)
        self.create_subscription(Image, "~/mask", self._on_mask, reliable)
        self.create_subscription(String, "~/subset", lambda msg: setattr(self, "subset", msg.data), reliable)
        self.create_subscription(String, "~/rig_status", self._on_status, 10)
        self.create_timer(0.2, self._check_done)

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_status(self, msg: String) -> None:
        status = json.loads(msg.data)
        sec, nanosec = status["stamp"]
        self.rig_time[sec * 1_000_000_000 + nanosec] = status["t"]
        if self.started is None:
            self.started = self.now() - status["t"]
        self._match()

    def _on_truth(self, msg: Image) -> None:
        self.truth[fields.stamp_to_ns(msg.header.stamp)] = images.image_to_numpy(msg)
        self._match()

    def _on_rgb(self, msg: Image) -> None:
        self.rgb[fields.stamp_to_ns(msg.header.stamp)] = images.image_to_rgb(msg)

    def _on_camera(self, name: str, msg: Image) -> None:
        stored = images.image_to_single_channel(msg)
        preview = confidence_to_mono8(encode_stored(stored, self.cameras[name]))
        self.camera_images[name][fields.stamp_to_ns(msg.header.stamp)] = preview

    def _on_mask(self, msg: Image) -> None:
        latency_ms = (self.now() - fields.stamp_to_sec(msg.header.stamp)) * 1e3
        key = fields.stamp_to_ns(msg.header.stamp)
        self.pending[key] = (images.image_to_numpy(msg), latency_ms, self.subset)
        self._match()

    def _match(self) -> None:
        """Score every mask whose ground truth and rig time have arrived (same header stamp)."""
        for key in [k for k in self.pending if k in self.truth and k in self.rig_time]:
            mask, latency_ms, subset = self.pending.pop(key)
            t = self.rig_time[key]
            stats = next((s for s in self.stats if s.phase.start <= t < s.phase.end), None)
            if stats is None:
                continue
            truth = self.truth[key]
            if truth.shape != mask.shape:  # a checkpoint trained at another size: score at the mask's
                truth = resize(truth, mask.shape, nearest=True)
            stats.times.append(t)
            stats.subsets[subset] += 1
            stats.latencies_ms.append(latency_ms)
            stats.confusion.update(mask, truth)  # 255 (no data) in the mask counts as wrong
            if stats.first_switch_s is None and subset == stats.phase.expected:
                stats.first_switch_s = t - stats.phase.start
            if stats.sample is None and t >= (stats.phase.start + stats.phase.end) / 2:
                inputs = [self.rgb.get(key), *(images.get(key) for images in self.camera_images.values())]
                inputs = [np.zeros((*truth.shape, 3), np.uint8) if a is None else resize(a, truth.shape, nearest=False)
                          for a in inputs]
                stats.sample = (*inputs, colorize(truth), colorize(mask))
        stores = (self.truth, self.rgb, self.rig_time, self.pending, *self.camera_images.values())
        for store in stores:  # bounded memory: keep ~10 s
            for key in sorted(store)[:-100]:
                store.pop(key)

    def _check_done(self) -> None:
        if self.started is not None and not self.done and self.now() - self.started > self.duration + 1.0:
            self.done = True
            self.report()
            raise SystemExit(0)

    def report(self) -> dict:
        rows = []
        for s in self.stats:
            span = s.phase.end - s.phase.start
            lat = np.median(s.latencies_ms) if s.latencies_ms else float("nan")
            iou = s.confusion.compute()
            used = s.subsets.most_common(1)[0][0] if s.subsets else "none"
            times = [s.phase.start, *sorted(s.times), s.phase.end]  # the phase's edges count: a late first mask too
            rows.append({
                "start_s": s.phase.start, "end_s": s.phase.end, "live": s.phase.name,
                "faults": list(s.phase.faults), "expected": s.phase.expected, "subset": used,
                "subsets_seen": dict(s.subsets), "masks": s.masks, "rate_hz": s.masks / span,
                "latency_ms_median": float(lat), "miou_present": iou.miou_present if s.masks else None,
                "switch_s": s.first_switch_s, "max_gap_s": float(np.max(np.diff(times))),
            })
        header = ("| phase (s) | sensors live | faults | subset used | masks | rate (Hz) | latency (ms) | mIoU "
                  "| switch (s) | max gap (s) |")
        lines = [header, "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            miou = f"{r['miou_present']:.1f}" if r["miou_present"] is not None else "n/a"
            switch = f"{r['switch_s']:.2f}" if r["switch_s"] is not None else "n/a"
            faults = ", ".join(f.replace(":", " ") for f in r["faults"]) or "-"
            lines.append(f"| {r['start_s']:.0f}-{r['end_s']:.0f} | {r['live']} | {faults} | {r['subset']} | "
                         f"{r['masks']} | {r['rate_hz']:.1f} | {r['latency_ms_median']:.0f} | {miou} | {switch} | "
                         f"{r['max_gap_s']:.2f} |")
        table = "\n".join(lines)
        print("\nCHARM node on the synthetic rig (mIoU over the classes present, per phase):\n" + table, flush=True)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        summary = {"duration_s": self.duration, "phases": rows}
        written = [self.out_dir / "summary.json"]
        written[0].write_text(json.dumps(summary, indent=2))
        samples = [s for s in self.stats if s.sample is not None]
        if samples:
            sheet = contact_sheet([list(s.sample) for s in samples], row_labels=[s.phase.label for s in samples],
                                  col_labels=["rgb input", *(f"{m} input" for m in self.cameras), "ground truth",
                                              "prediction"], tile_hw=(160, 160))
            if cv2.imwrite(str(self.out_dir / "contact_sheet.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
                written.append(self.out_dir / "contact_sheet.png")
        else:
            print("no contact sheet: no phase had a scored mask", flush=True)
        print(f"wrote {' and '.join(str(p) for p in written)}", flush=True)
        return summary


def main(args: list[str] | None = None) -> int:
    return run_node(DemoReport, "demo_report", args, parameters=REPORT_PARAMETERS, summary=__doc__)


if __name__ == "__main__":
    sys.exit(main())
