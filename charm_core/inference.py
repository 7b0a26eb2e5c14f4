"""Predictor: one loaded model answering `predict({modality: 3xHxW array})` on CPU or CUDA.

The ROS node and the offline bag evaluator both call this, so live and offline numbers come from the
same code. Inputs are already encoded network tensors (charm_core encoders); the predictor adds
nothing but batching, device transfer and precision handling.
"""
from __future__ import annotations

import contextlib
import gc
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from charm_core.checkpoint import CheckpointInfo, load_checkpoint
from charm_core.malloc_tuning import release_freed_memory, retain_freed_memory
from charm_core.model.segmentor import Segmentor

PRECISIONS = ("fp32", "fp16", "bf16")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


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


class Predictor:
    """Thread-safe single-frame inference; absent modalities are simply not passed (not computed).

    CPU: fp32 (or bf16 autocast), channels_last, inference_mode, and glibc told to keep freed
    activation memory (see charm_core.malloc_tuning) since this process exists to run the model.
    CUDA: fp32, or fp16/bf16 autocast (LayerNorm, softmax and the output stay fp32).
    """

    def __init__(self, model: Segmentor, info: CheckpointInfo, device: str | torch.device = "auto",
                 precision: str = "fp32"):
        self.device = resolve_device(device)
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: expected one of {PRECISIONS}")
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError("precision 'fp16' needs a CUDA device; use 'fp32' (or 'bf16') on CPU")
        if precision == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("precision 'bf16' is not supported by this GPU; use 'fp16' or 'fp32'")
        if info.config.num_classes > 255:
            raise ValueError(f"{info.config.num_classes} classes do not fit uint8 labels (255 = no data)")
        self.precision = precision
        self.info = info
        self.model = model.eval().to(self.device)
        if self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
            retain_freed_memory()
        self.last_forward_ms = float("nan")
        self._lock = threading.Lock()

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto",
                        precision: str = "fp32") -> Predictor:
        dev = resolve_device(device)
        model, info = load_checkpoint(path, map_location=dev)
        return cls(model, info, dev, precision)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.info.class_names

    @property
    def palette(self) -> np.ndarray:
        return self.info.palette

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.info.modalities

    def predict(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """{modality: float 3xHxW} -> (labels uint8 HxW, confidence float32 HxW = max softmax prob).

        Sets `last_forward_ms`: model plus softmax/argmax on the device, transfers excluded.
        """
        batch = {m: self._to_tensor(a) for m, a in self._validate(inputs).items()}
        with self._lock, torch.inference_mode(), self._autocast():
            start = time.perf_counter()
            logits = self.model(batch).float()
            top, labels = logits.max(dim=1)
            confidence = torch.exp(top - torch.logsumexp(logits, dim=1))
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.last_forward_ms = (time.perf_counter() - start) * 1000.0
        return labels[0].to(torch.uint8).cpu().numpy(), confidence[0].cpu().numpy()

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

    def _to_tensor(self, array: np.ndarray) -> Tensor:
        a = np.asarray(array, dtype=np.float32)  # the encoders' channels-last views pass without a copy
        if min(a.strides) < 0:  # torch cannot view negative strides (e.g. a flipped image)
            a = np.ascontiguousarray(a)
        t = torch.from_numpy(a)[None]
        if self.device.type == "cpu":
            return t.contiguous(memory_format=torch.channels_last)
        return t.to(self.device)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=_DTYPES[self.precision])
