"""The bag evaluator: the node's Engine driven by bag messages, the stamps as the clock, every frame kept."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from charm_core.data.augment import resize
from charm_core.inference import Predictor
from charm_core.metrics import ConfusionMatrix
from charm_core.modalities import all_subsets, subset_name
from charm_ros.bags.reader import count_messages, read_in_stamp_order, stamp_ns
from charm_ros.bags.report import BagReport, SubsetStats
from charm_ros.msgs import fields, images
from charm_ros.runtime.dropouts import Dropout, dropped_at
from charm_ros.runtime.engine import Engine
from charm_ros.runtime.faults import Fault, FaultInjector
from charm_ros.runtime.node_config import NodeConfig
from charm_ros.runtime.pipeline import FrameSkipped, Result


class BagEvaluator:
    """Drives the node's Engine with bag messages, the stamps as the clock; collects every result."""

    def __init__(self, predictor: Predictor, config: NodeConfig, topics: dict[str, str | None],
                 drop: list[Dropout] | None = None, faults: list[Fault] | None = None) -> None:
        self.engine = Engine(predictor, config)
        self.engine.pipeline.wait_for_graphs = True
        self.engine.faults = FaultInjector(faults) if faults else None
        self.enabled = config.enabled
        self.topics = {k: v for k, v in topics.items() if v}
        self.by_topic = {v: k for k, v in self.topics.items()}
        self.drop = drop or []
        self.num_classes = len(predictor.class_names)
        self.gt: dict[int, np.ndarray] = {}
        self.results: list[Result] = []
        self.dropped_by_schedule: Counter = Counter()
        self.content_out: dict[str, Counter] = {}   # sensor -> fault kind -> frames it was left out of for it
        self.content_why: dict[str, str] = {}       # sensor -> the status text of its last content exclusion
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
            if self.engine.faults is not None:  # --faults counts from the first message, as --dropouts does
                self.engine.faults_origin = stamp * 1e-9
        if received_ns is not None and key in self.enabled:
            self.lags.setdefault(key, []).append((received_ns - stamp) * 1e-9)
        done: list[Result] = []
        at = (stamp if at_ns is None else at_ns) * 1e-9
        if at > self.clock:
            self.clock = at
            done = self._run(self.engine.due(self.clock))
        try:
            if key == "gt":
                self.gt[stamp] = images.image_to_numpy(msg)
            elif key is not None and key.endswith("_info"):
                self.engine.accept_camera_info(key[:-len("_info")], msg)
            elif key in self.enabled:
                if key in dropped_at(self.drop, (stamp - self.first_stamp) * 1e-9):
                    self.dropped_by_schedule[key] += 1
                else:
                    self.engine.accept(key, msg, self.clock)
        except fields.ConversionError:
            pass  # counted by the engine, reported per sensor
        return done

    def replay(self, bag: Path, window_s: float = 1.0, desc: str = "charm-bag-eval") -> tuple[Counter, Counter]:
        """Feed the whole bag in stamp order (see read_in_stamp_order), with a progress bar over its
        messages; returns (messages read per topic, undecodable messages per topic)."""
        topics = set(self.topics.values())
        messages: Counter = Counter()
        undecodable: Counter = Counter()
        with tqdm(total=count_messages(bag, topics), desc=desc, unit="msg") as bar:
            for topic, msg, at, received in read_in_stamp_order(bag, topics, window_s, messages, undecodable):
                self.feed(topic, msg, at, received)
                bar.set_postfix(frames=self.frames_out, refresh=False)
                bar.update(sum(messages.values()) - bar.n)  # read so far, undecodable ones included
            self.finish()
            bar.set_postfix(frames=self.frames_out)
        return messages, undecodable

    @property
    def frames_out(self) -> int:
        """Frames this replay produced so far (the progress bar's count)."""
        return len(self.results)

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
            self._count_content_exclusions()
            try:
                done.append(self.engine.run(frame, self.clock))
            except FrameSkipped:
                continue
        self.results.extend(done)
        return done

    def _count_content_exclusions(self) -> None:
        """A frame about to run: the sensors its content health leaves out, and why (they are silenced in
        the synchronizer, so no frame holds them: this is the only place they are counted)."""
        for sensor in self.engine.content.excluded():
            verdict = self.engine.content.verdict(sensor)
            self.content_out.setdefault(sensor, Counter())[verdict.fault.kind] += 1
            self.content_why[sensor] = verdict.text()

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
        content = {m: (dict(kinds), self.content_why[m]) for m, kinds in self.content_out.items()}
        return BagReport(ordered, overall, messages, self.rejected, reasons, self.dropped_by_schedule,
                         c.frames_skipped, unmatched, wall_s, used, offsets, reference and reference.name, left_out,
                         content)
