"""What one replayed bag scored: per subset frames, confusion and latency; per sensor its use and clock."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from charm_core.metrics import ConfusionMatrix
from charm_ros.runtime.health import OFF_CLOCK_S, offset_text


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
    # sensor -> (synchronized messages, frames it went into)
    used: dict[str, tuple[int, int]] = field(default_factory=dict)
    offsets: dict[str, float] = field(default_factory=dict)  # sensor -> its stamps minus the reference's (s)
    reference: str | None = None  # the highest-priority sensor in the bag, which the offsets refer to
    left_out: dict[str, tuple[int, str]] = field(default_factory=dict)  # sensor -> (frames it was left out of, why)
    # sensor -> ({fault kind: frames its content health left it out of}, the last such status text)
    content_left_out: dict[str, tuple[dict[str, int], str]] = field(default_factory=dict)

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
        return [f"{m}: left out of {n} frames: {why}" for m, (n, why) in self.left_out.items()] + [
            f"{m}: left out of {sum(kinds.values())} frames for its content ({_kinds(kinds)}), last: {why}"
            for m, (kinds, why) in self.content_left_out.items()]

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
                                "left_out_for_content": self.content_left_out.get(m, ({}, ""))[0],
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
        """Per sensor: messages synchronized, frames it went into or was left out of (unusable in the
        frame, or for its content: frames run while content health excluded it, per fault), stamp offset."""
        lines = [f"| sensor | messages synchronized | in frames | left out of frames | stamp offset to "
                 f"{self.reference or 'the reference'} (s) | rejected | left out for content |",
                 "|---|---|---|---|---|---|---|"]
        for m, s in self.as_dict()["sensors"].items():
            offset = "reference" if m == self.reference else _fmt(s["stamp_offset_s"], 3)
            content = s["left_out_for_content"]
            content = f"{sum(content.values())} ({_kinds(content)})" if content else "0"
            lines.append(f"| {m} | {s['synchronized']} | {s['in_frames']} | {s['left_out_of_frames']} | {offset} | "
                         f"{self.rejected.get(m, 0)} | {content} |")
        return "\n".join(lines)


def _kinds(kinds: dict[str, int]) -> str:
    """{'frozen': 31, 'collapsed': 2} -> 'frozen 31, collapsed 2'."""
    return ", ".join(f"{kind} {n}" for kind, n in kinds.items())


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 2) if values else None


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
