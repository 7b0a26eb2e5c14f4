"""The bag exporter: a bag replayed as the evaluator replays it (the same Engine), each synchronized frame
written as the network images the node would feed the model, in the DELIVER layout."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from charm_core.classes import IGNORE_INDEX, train_to_raw
from charm_core.data.augment import resize
from charm_core.data.base import write_image
from charm_core.data.deliver import FOLDERS
from charm_core.inference import Predictor
from charm_core.modalities import ModalitySpec
from charm_ros.bags.evaluator import BagEvaluator
from charm_ros.bags.reader import stamp_ns
from charm_ros.runtime.pipeline import FrameSkipped


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

    @property
    def frames_out(self) -> int:
        return len(self.written)

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
