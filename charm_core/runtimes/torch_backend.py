"""The reference runtime: the PyTorch model itself, eager, any subset and size.

CPU: fp32 (or bf16 autocast), channels_last, inference_mode, and glibc told to keep freed
activation memory (see charm_core.malloc_tuning) since this process exists to run the model.
CUDA: fp32, or fp16/bf16 autocast (LayerNorm, softmax and the output stay fp32).
"""
from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
from torch import Tensor

from charm_core.malloc_tuning import retain_freed_memory
from charm_core.model.segmentor import Segmentor
from charm_core.runtimes.graph import decide

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class TorchRunner:
    name = "torch"

    def __init__(self, model: Segmentor, device: torch.device, precision: str):
        self.device = device
        self.precision = precision
        self.model = model.eval().to(device)
        if device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
            retain_freed_memory()
        self.last_ms = float("nan")

    def run(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """{modality: float 3xHxW} -> (labels uint8 HxW, confidence float32 HxW); `last_ms` is the
        model plus argmax/softmax on the device, transfers excluded."""
        batch = {m: self._to_tensor(a) for m, a in inputs.items()}
        with torch.inference_mode(), self._autocast():
            start = time.perf_counter()
            labels, confidence = decide(self.model(batch).float())
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.last_ms = (time.perf_counter() - start) * 1000.0
        return labels[0].to(torch.uint8).cpu().numpy(), confidence[0].cpu().numpy()

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
