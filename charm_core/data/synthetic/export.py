"""Writes synthetic drives in the DELIVER folder layout, in parallel and byte-reproducibly.

<out>/{img,hha,depth,event,lidar,thermal,semantic}/<condition>/<split>/MAP_<m>_point<p>[_<case>]/
    <frame:06d>_{rgb,depth,depth,event,lidar,thermal,semantic}_front.png
hha/ and lidar/ and event/ hold the network encodings (charm_core.encoders, the same code the ROS node
runs), depth/ 16-bit millimetres (0 = none), thermal/ 16-bit centi-Kelvin (what radiometric mono16
drivers publish), semantic/ raw DELIVER ids (train id + 1, 0 = unlabelled). Which sensors are
written is a choice (`modalities`, default DELIVER's four: img, hha + depth, event, lidar);
semantic/ always is.
Every sequence (one folder) is rendered from its own seed, so the output does not depend on the
number of worker processes or their scheduling.
"""
from __future__ import annotations

import json
import multiprocessing
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from charm_core.classes import DELIVER_CLASSES, train_to_raw
from charm_core.data.base import write_image
from charm_core.data.synthetic.conditions import CASES, CONDITIONS
from charm_core.data.synthetic.thermal import centikelvin
from charm_core.data.synthetic.world import World
from charm_core.encoders.frame import FrameEncoder
from charm_core.modalities import DELIVER_MODALITIES

GENERATOR_VERSION = "1.1"  # 1.1: conditions spread over every five sequences
SPLITS = ("train", "val", "test")
FRAMES_PER_SEQUENCE = 10
FRAME_SPACING_S = 0.5
FOLDERS = {"rgb": ("img", "rgb"), "hha": ("hha", "depth"), "depth": ("depth", "depth"), "event": ("event", "event"),
           "lidar": ("lidar", "lidar"), "thermal": ("thermal", "thermal"), "semantic": ("semantic", "semantic")}
RENDERABLE = ("rgb", "depth", "event", "lidar", "thermal")
# spawn, not fork: forking a process whose BLAS/OpenCV/tqdm threads hold locks can deadlock the
# workers. Scripts calling write_dataset with workers > 1 need the usual `if __name__ == "__main__":`.
START_METHOD = "spawn"
_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
# Half of the sequences are clean; the other half is spread evenly over the five failure cases.
_CASE_SLOTS: tuple[str | None, ...] = (None,) * len(CASES) + CASES


@dataclass(frozen=True)
class SequenceSpec:
    """One drive segment = one DELIVER sequence folder."""

    split: str
    index: int
    frames: int
    world_seed: int
    condition: str
    case: str | None
    camera_height: float
    camera_pitch: float
    speed: float
    start_x: float

    @property
    def folder(self) -> str:
        name = f"MAP_{self.index}_point{int(self.start_x)}"
        return f"{name}_{self.case}" if self.case else name


def plan(seed: int, counts: dict[str, int]) -> list[SequenceSpec]:
    """Deterministic list of sequences covering `counts` frames per split, conditions x cases mixed."""
    combos = [(c, k) for c in CONDITIONS for k in _CASE_SLOTS]
    specs = []
    for split_id, split in enumerate(SPLITS):
        n = int(counts.get(split, 0))
        if n < 0:
            raise ValueError(f"frame count for {split} must be >= 0, got {n}")
        for i in range(-(-n // FRAMES_PER_SEQUENCE)):
            cycle, slot = divmod(i, len(combos))
            order = np.random.default_rng([seed, split_id, cycle]).permutation(len(combos))
            condition, case = _condition_blocks([combos[k] for k in order])[slot]
            rng = np.random.default_rng([seed, split_id, i, 17])
            specs.append(SequenceSpec(
                split=split, index=i, frames=min(FRAMES_PER_SEQUENCE, n - i * FRAMES_PER_SEQUENCE),
                world_seed=int(np.random.SeedSequence([seed, split_id, i]).generate_state(1)[0]),
                condition=condition, case=case, camera_height=round(float(rng.uniform(1.4, 2.0)), 3),
                camera_pitch=round(float(rng.uniform(0.0, 0.07)), 4), speed=round(float(rng.uniform(5.0, 12.0)), 2),
                start_x=float(np.floor(rng.uniform(0.0, 1500.0)))))
    return specs


def _condition_blocks(shuffled: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """The shuffled (condition, case) cycle reordered so that every run of len(CONDITIONS) sequences
    has each condition once: a small set (a split of five sequences) covers every condition. Each
    block takes, in shuffled order, the first combination of each condition not used yet, so the
    cycle's combinations and its first sequence are those of the plain shuffle."""
    left = list(shuffled)
    out: list[tuple[str, str | None]] = []
    while left:
        seen: set[str] = set()
        for combo in list(left):
            if combo[0] not in seen:
                seen.add(combo[0])
                out.append(combo)
                left.remove(combo)
            if len(seen) == len(CONDITIONS):
                break
    return out


@contextmanager
def single_threaded_children():
    """Workers spawned inside inherit os.environ: one BLAS/OpenMP thread each, so N workers use N
    cores instead of fighting over them (the renderer's small matrix products gain nothing from threads).
    The parent's environment is restored on exit."""
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def sample_path(out: Path, spec: SequenceSpec, frame: int, kind: str) -> Path:
    folder, token = FOLDERS[kind]
    return out / folder / spec.condition / spec.split / spec.folder / f"{frame:06d}_{token}_front.png"


def check_modalities(modalities: tuple[str, ...]) -> tuple[str, ...]:
    """The sensors to write, validated (one-line error for a name the world does not render)."""
    modalities = tuple(modalities)
    bad = sorted(set(modalities) - set(RENDERABLE))
    if bad or not modalities or len(set(modalities)) != len(modalities):
        raise ValueError(f"modalities {list(modalities)}: give distinct ones of {', '.join(RENDERABLE)}")
    return modalities


def render_sequence(spec: SequenceSpec, out: Path, size: tuple[int, int],
                    modalities: tuple[str, ...] = DELIVER_MODALITIES) -> np.ndarray:
    """Render and write one sequence; returns its per-class pixel counts (25 classes + unlabelled)."""
    world = World(spec.world_seed, size_hw=size, condition=spec.condition, case=spec.case,
                  speed=spec.speed, camera_height=spec.camera_height, camera_pitch=spec.camera_pitch,
                  start_x=spec.start_x, thermal="thermal" in modalities)
    encoder = FrameEncoder(size, world.geometry)
    hist = np.zeros(len(DELIVER_CLASSES) + 1, np.int64)
    for j in range(spec.frames):
        f = world.frame_at(j * FRAME_SPACING_S)
        wanted = {m: getattr(f, m) for m in ("rgb", "depth", "event", "lidar") if m in modalities}
        enc = encoder.encode(K=f.K, image_hw=size, **wanted)
        if "rgb" in modalities:
            write_image(sample_path(out, spec, j, "rgb"), enc["rgb"])
        if "depth" in modalities:
            write_image(sample_path(out, spec, j, "hha"), enc["depth"])
            write_image(sample_path(out, spec, j, "depth"), np.rint(f.depth * 1000.0).astype(np.uint16))
        if "event" in modalities:
            write_image(sample_path(out, spec, j, "event"), enc["event"])
        if "lidar" in modalities:
            write_image(sample_path(out, spec, j, "lidar"), enc["lidar"])
        if "thermal" in modalities:
            write_image(sample_path(out, spec, j, "thermal"), centikelvin(f.thermal))
        write_image(sample_path(out, spec, j, "semantic"), train_to_raw(f.labels))
        counts = np.bincount(f.labels.ravel(), minlength=256)
        hist[: len(DELIVER_CLASSES)] += counts[: len(DELIVER_CLASSES)]
        hist[-1] += counts[len(DELIVER_CLASSES):].sum()
    return hist


def _init_worker() -> None:
    cv2.setNumThreads(1)    # one process per core already; OpenCV threads would only contend


def _render_task(args: tuple[SequenceSpec, str, tuple[int, int], tuple[str, ...]]) -> tuple[int, np.ndarray]:
    spec, out, size, modalities = args
    return spec.frames, render_sequence(spec, Path(out), size, modalities)


def write_dataset(out: str | Path, counts: dict[str, int], size: tuple[int, int], seed: int, workers: int = 2,
                  progress: bool = True, modalities: tuple[str, ...] = DELIVER_MODALITIES) -> dict:
    """Generate the dataset; returns (and writes to <out>/meta.json) its description and class histogram.

    `counts` maps split names to frame counts; `modalities` the sensors to write (of RENDERABLE); a
    sensor's files do not depend on which others are written. workers > 1 renders sequences in spawned processes
    (a script calling this needs the usual `if __name__ == "__main__":` guard); the files are the same
    byte for byte whatever the number of workers."""
    out = Path(out)
    modalities = check_modalities(modalities)
    specs = plan(seed, counts)
    total = sum(s.frames for s in specs)
    if total == 0:
        raise ValueError("nothing to generate: all split counts are 0")
    out.mkdir(parents=True, exist_ok=True)
    tasks = [(s, str(out), tuple(size), modalities) for s in specs]
    hist = np.zeros(len(DELIVER_CLASSES) + 1, np.int64)
    with tqdm(total=total, unit="frame", disable=not progress, desc="charm-synth") as bar:
        if workers > 1:
            with single_threaded_children():
                pool = multiprocessing.get_context(START_METHOD).Pool(workers, initializer=_init_worker)
            with pool:
                for n, h in pool.imap_unordered(_render_task, tasks):
                    hist += h
                    bar.update(n)
        else:
            for task in tasks:
                n, h = _render_task(task)
                hist += h
                bar.update(n)
    sequences = []
    for s in specs:
        w = World(s.world_seed, size_hw=size, camera_height=s.camera_height, camera_pitch=s.camera_pitch)
        sequences.append({**asdict(s), "folder": s.folder, "K": w.K.round(6).tolist(),
                          "T_cam_lidar": w.geometry.T_cam_lidar.round(9).tolist()})
    meta = {
        "generator": "charm_core.data.synthetic", "version": GENERATOR_VERSION, "seed": seed,
        "size": list(size), "counts": {k: int(counts.get(k, 0)) for k in SPLITS},
        "frames_per_sequence": FRAMES_PER_SEQUENCE, "frame_spacing_s": FRAME_SPACING_S,
        "classes": list(DELIVER_CLASSES), "class_pixels": {name: int(v) for name, v in
                                                          zip(list(DELIVER_CLASSES) + ["unlabelled"], hist)},
        "sequences": sequences,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return meta
