"""Predictor: one loaded model answering `predict({modality: 3xHxW array})` on CPU or CUDA.

The ROS node and the offline bag evaluator both call this, so live and offline numbers come from the
same code. Inputs are already encoded network tensors (charm_core encoders); the predictor adds
nothing but batching, device transfer and precision handling.

Backends (charm_core.runtimes): `torch` runs the model itself and is the reference; `onnxruntime`
and `tensorrt` run one exported graph per modality subset and input size. Those graphs are built by
`prepare` (at start-up, or in the background) and cached on disk; a frame whose graph is not ready
is served by torch at once, never made to wait for an export, and `last_backend` says so.
"""
from __future__ import annotations

import gc
import json
import logging
import threading
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from tqdm import tqdm

from charm_core.checkpoint import CheckpointInfo, load_checkpoint
from charm_core.malloc_tuning import release_freed_memory
from charm_core.modalities import all_subsets
from charm_core.model import build_model
from charm_core.model.segmentor import Segmentor
from charm_core.runtimes import BACKENDS, installed, resolve_backend
from charm_core.runtimes.cache import GraphCache, file_sha256, model_digest
from charm_core.runtimes.graph import GraphSpec, parse_subset, subset_key
from charm_core.runtimes.torch_backend import TorchRunner

PRECISIONS = ("fp32", "fp16", "bf16")  # torch; onnxruntime adds int8 on CPU
NOT_READY = "torch (graph not ready)"
FAILED = "torch (graph failed)"
log = logging.getLogger(__name__)

Key = tuple[tuple[str, ...], tuple[int, int]]  # (subset, (H, W))
ProgressFn = Callable[[int, int, str], None]  # (done, total, subset name)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> CUDA when available, else CPU; an explicit CUDA device must exist."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available; use 'cpu' or 'auto'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise ValueError(f"device {device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return dev


def release_memory(device: torch.device) -> None:
    """Give back the memory of predictors the caller has dropped: the CUDA cache on a GPU, and the C
    heap's free pages (kept by retain_freed_memory) in any case, so a process that unloads its model
    (a deactivated node) shrinks by about the model's size."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    release_freed_memory()
def check_precision(backend: str, device: torch.device, precision: str) -> None:
    """ValueError (one line, what to use instead) for a precision the backend cannot run there."""
    if backend == "torch":
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: expected one of {PRECISIONS} for the torch backend"
                             + ("; int8 runs on backend 'onnxruntime'" if precision == "int8" else ""))
        if precision == "fp16" and device.type != "cuda":
            raise ValueError("precision 'fp16' needs a CUDA device; use 'fp32' (or 'bf16') on CPU")
        if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("precision 'bf16' is not supported by this GPU; use 'fp16' or 'fp32'")
    elif backend == "onnxruntime":
        if not installed("onnxruntime"):
            raise ValueError("backend 'onnxruntime' needs the onnxruntime package (requirements.txt)")
        allowed = ("fp32", "int8") if device.type == "cpu" else ("fp32", "fp16")
        if precision not in allowed:
            raise ValueError(f"precision {precision!r}: onnxruntime on {device.type} runs {allowed}")
        if device.type == "cuda":
            from charm_core.runtimes.onnx_backend import available_providers, providers_for

            providers_for(device, precision, available_providers(), None)  # raises if none fits
    elif backend == "tensorrt":
        from charm_core.runtimes.tensorrt_backend import ENGINE_PRECISIONS

        if device.type != "cuda":
            raise ValueError("backend 'tensorrt' needs a CUDA device; use 'onnxruntime' on CPU")
        if precision not in ENGINE_PRECISIONS:
            raise ValueError(f"precision {precision!r}: tensorrt engines are {ENGINE_PRECISIONS}")
        if not installed("tensorrt"):
            raise ValueError("backend 'tensorrt' needs TensorRT (pip install tensorrt; docs/runtimes.md)")


class Predictor:
    """Thread-safe single-frame inference; absent modalities are simply not passed (not computed).

    `backend`: "torch" (default: the reference), "onnxruntime", "tensorrt" or "auto" (onnxruntime on
    CPU; on CUDA TensorRT when installed, else torch). Graph backends need `prepare` (or build a
    subset in the background the first time a frame of it arrives). Graphs are cached under
    `cache_dir` (default $CHARM_CACHE_DIR or ~/.cache/charm_ros), keyed by `digest`, the SHA-256 of
    the checkpoint file (from_checkpoint) or of the in-memory model's config and tensors.
    """

    def __init__(self, model: Segmentor, info: CheckpointInfo, device: str | torch.device = "auto",
                 precision: str = "fp32", backend: str = "torch", *, cache_dir: str | Path | None = None,
                 threads: int | None = None, digest: str | None = None):
        self.device = resolve_device(device)
        self.backend = resolve_backend(backend, self.device, precision)
        check_precision(self.backend, self.device, precision)
        if info.config.num_classes > 255:
            raise ValueError(f"{info.config.num_classes} classes do not fit uint8 labels (255 = no data)")
        self.precision = precision
        self.info = info
        self._torch = TorchRunner(model, self.device, precision if precision in PRECISIONS else "fp32")
        self.model = self._torch.model
        self.cache = GraphCache(cache_dir)
        self.threads = threads
        self._digest = digest
        self._export_model: Segmentor | None = None
        self._runners: dict[Key, object] = {}
        self._notes: dict[Key, str] = {}  # how each graph was obtained (cached / exported, why)
        self._pending: set[Key] = set()
        self._failed: dict[Key, str] = {}
        self._state = threading.Lock()  # guards the dicts above
        self._build_lock = threading.Lock()  # one export / engine build at a time
        self._lock = threading.Lock()  # one frame at a time
        self.last_forward_ms = float("nan")
        self.last_backend = ""

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto", precision: str = "fp32",
                        backend: str = "torch", **kwargs) -> Predictor:
        """Load a checkpoint; kwargs as the constructor (cache_dir, threads)."""
        dev = resolve_device(device)
        concrete = resolve_backend(backend, dev, precision)
        check_precision(concrete, dev, precision)  # before the (slow) load
        model, info = load_checkpoint(path, map_location=dev)
        digest = file_sha256(path) if concrete != "torch" else None
        return cls(model, info, dev, precision, concrete, digest=digest, **kwargs)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.info.class_names

    @property
    def palette(self) -> np.ndarray:
        return self.info.palette

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.info.modalities

    @property
    def default_size(self) -> tuple[int, int] | None:
        size = self.info.provenance.get("input_size")
        return (int(size[0]), int(size[1])) if size else None

    def predict(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """{modality: float 3xHxW} -> (labels uint8 HxW, confidence float32 HxW = max softmax prob).

        Sets `last_forward_ms` (the runtime's own time, transfers excluded) and `last_backend` (what
        served this frame: "torch", "onnxruntime", "tensorrt", or "torch (graph not ready)" /
        "torch (graph failed)" when a graph backend could not serve this subset yet).
        """
        inputs = self._validate(inputs)
        subset = tuple(m for m in self.modalities if m in inputs)
        h, w = next(iter(inputs.values())).shape[1:]
        runner, served = self._runner_for((subset, (h, w)))
        with self._lock:
            labels, confidence = runner.run(inputs)
            self.last_forward_ms = runner.last_ms
            self.last_backend = served
        return labels, confidence

    def prepare(self, subsets: Iterable[str | Iterable[str]] | None = None, size: tuple[int, int] | None = None,
                *, progress: bool | ProgressFn = False, background: bool = False) -> threading.Event:
        """Build (or load from the cache) the graphs of `subsets` (default: all 2^N - 1) at `size`
        (default: the checkpoint's input size). Returns an event set when all are done.

        Foreground: returns when done; RuntimeError if any failed. Background: returns at once, a
        failure leaves that subset on torch (see `status`). `progress`: True for a progress bar, or
        a callable (done, total, subset name). A no-op for the torch backend.
        """
        done = threading.Event()
        if self.backend == "torch":
            done.set()
            return done
        size = self._size(size)
        chosen = (all_subsets(self.modalities) if subsets is None
                  else [parse_subset(s, self.modalities) for s in subsets])
        keys = list(dict.fromkeys((s, size) for s in chosen))
        with self._state:
            self._pending.update(k for k in keys if k not in self._runners and k not in self._failed)
        if background:
            threading.Thread(target=self._build_all, args=(keys, progress, done), name="charm_prepare",
                             daemon=True).start()
            return done
        self._build_all(keys, progress, done)
        failed = {subset_key(k[0]): self._failed[k] for k in keys if k in self._failed}
        if failed:
            raise RuntimeError(f"{self.backend}: {len(failed)} graph(s) failed: "
                               + "; ".join(f"{n}: {r}" for n, r in failed.items()))
        return done

    def ready(self, subset: str | Iterable[str], size: tuple[int, int] | None = None) -> bool:
        """Whether frames of this subset (and size) are served by the configured backend."""
        if self.backend == "torch":
            return True
        with self._state:
            return (parse_subset(subset, self.modalities), self._size(size)) in self._runners

    def status(self) -> dict:
        """Backend and per-graph state ("rgb+lidar 256x256" names) for diagnostics."""
        def name(key: Key) -> str:
            return f"{subset_key(key[0])} {key[1][0]}x{key[1][1]}"

        with self._state:
            return {"backend": self.backend, "precision": self.precision,
                    "ready": sorted(name(k) for k in self._runners),
                    "pending": sorted(name(k) for k in self._pending),
                    "failed": {name(k): r for k, r in self._failed.items()},
                    "built": {name(k): n for k, n in self._notes.items()}}

    # ------------------------------------------------------------------ graphs
    def _runner_for(self, key: Key) -> tuple[object, str]:
        if self.backend == "torch":
            return self._torch, "torch"
        with self._state:
            runner = self._runners.get(key)
            if runner is not None:
                return runner, runner.name
            failed = key in self._failed
            schedule = not failed and key not in self._pending
        if schedule:  # first frame of this subset: build it for the next ones
            self.prepare([key[0]], key[1], background=True)
        return self._torch, FAILED if failed else NOT_READY

    def _build_all(self, keys: list[Key], progress: bool | ProgressFn, done: threading.Event) -> None:
        bar = tqdm(total=len(keys), desc=f"{self.backend} graphs", unit="graph", leave=False,
                   disable=progress is not True)
        for i, key in enumerate(keys):
            with self._build_lock:
                with self._state:
                    todo = key not in self._runners and key not in self._failed
                if todo:
                    self._build_one(key)
            bar.update()
            if callable(progress):
                progress(i + 1, len(keys), subset_key(key[0]))
        bar.close()
        done.set()

    def _build_one(self, key: Key) -> None:
        subset, size = key
        try:
            runner, note = self._make_runner(GraphSpec(self._checkpoint_digest(), subset, size))
        except Exception as exc:  # any failure keeps this subset on torch, and says why
            log.warning("%s graph for %s at %dx%d failed, torch serves it: %s", self.backend,
                        subset_key(subset), *size, exc)
            with self._state:
                self._failed[key] = f"{type(exc).__name__}: {exc}"
                self._pending.discard(key)
            return
        with self._state:
            self._runners[key] = runner
            self._notes[key] = note
            self._pending.discard(key)
            if not self._pending:
                self._export_model = None  # the CPU copy is only kept while builds are due

    def _make_runner(self, spec: GraphSpec) -> tuple[object, str]:
        graph, note = self.cache.graph(spec, self._cpu_model)
        if self.backend == "tensorrt":
            from charm_core.runtimes.tensorrt_backend import TrtRunner, cached_engine

            engine, how = cached_engine(self.cache, spec, graph, self.precision, self.device)
            return TrtRunner(engine, self.device), f"graph {note}; engine {how}"
        from charm_core.runtimes.onnx_backend import OrtRunner

        if self.precision == "int8":
            from charm_core.runtimes.quantize import cached_int8

            graph, how = cached_int8(self.cache, spec, graph)
            note = f"graph {note}; int8 {how}"
        return OrtRunner(graph, self.device, self.precision, self.threads,
                         engine_cache=self.cache.root / "ort_tensorrt"), note

    def _cpu_model(self) -> Segmentor:
        """An eval-mode float32 CPU copy of the model to export from (never the serving model)."""
        if self._export_model is None:
            model = build_model(self.info.config)
            model.load_state_dict({k: v.detach().float().cpu() for k, v in self.model.state_dict().items()})
            self._export_model = model.eval()
        return self._export_model

    def _checkpoint_digest(self) -> str:
        if self._digest is None:
            self._digest = model_digest(self.model, json.dumps(self.info.config.to_dict(), sort_keys=True))
        return self._digest

    def _size(self, size: tuple[int, int] | None) -> tuple[int, int]:
        size = size or self.default_size
        if size is None:
            raise ValueError("no input size: pass size=(H, W) (the checkpoint records none)")
        return int(size[0]), int(size[1])

    def _validate(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not isinstance(inputs, dict) or not inputs:
            raise ValueError(f"inputs must be a non-empty dict {{modality: 3xHxW array}} of {list(self.modalities)}")
        unknown = sorted(set(inputs) - set(self.modalities))
        if unknown:
            raise ValueError(f"inputs {unknown} are not modalities of this model {list(self.modalities)}")
        shape = None
        for m, a in inputs.items():
            if not isinstance(a, np.ndarray) or a.ndim != 3 or a.shape[0] != 3 or a.dtype.kind != "f":
                got = (a.shape, a.dtype) if isinstance(a, np.ndarray) else type(a).__name__
                raise ValueError(f"inputs[{m!r}]: expected a float array 3xHxW, got {got}")
            if shape is not None and a.shape != shape:
                raise ValueError(f"inputs[{m!r}] has shape {a.shape}, others {shape}: encode all at one size")
            shape = a.shape
            if not np.isfinite(a).all():
                raise ValueError(f"inputs[{m!r}] contains NaN or inf; encoders must produce finite values")
        return inputs


__all__ = ["BACKENDS", "PRECISIONS", "Predictor", "check_precision", "resolve_device"]
