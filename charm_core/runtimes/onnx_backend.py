"""ONNX Runtime: one InferenceSession per subset graph; CPU EP, CUDA EP, or TensorRT EP on a GPU."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from charm_core.runtimes.graph import runtime_graph
from charm_core.runtimes.ort_session import CPU_EP, CUDA_EP, TENSORRT_EP, available_providers, session_options


def providers_for(device: torch.device, precision: str, available: list[str],
                  engine_cache: Path | None) -> list:
    """Execution providers, best first, for a device and precision; ValueError if none fits.

    CUDA: the TensorRT EP (fp16 when asked, its engines cached under `engine_cache`) when present,
    then the CUDA EP for what TensorRT does not take; CPU is always the last resort.
    """
    if device.type == "cpu":
        return [CPU_EP]
    index = device.index or 0
    providers: list = []
    if TENSORRT_EP in available:
        options = {"device_id": index, "trt_fp16_enable": precision == "fp16"}
        if engine_cache is not None:
            options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(engine_cache),
                           trt_timing_cache_enable=True, trt_timing_cache_path=str(engine_cache))
        providers.append((TENSORRT_EP, options))
    elif precision == "fp16":
        raise ValueError("precision 'fp16' with onnxruntime on CUDA needs its TensorRT execution provider "
                         f"(this onnxruntime has {available}); use backend 'torch' or 'tensorrt'")
    if CUDA_EP in available:
        providers.append((CUDA_EP, {"device_id": index}))
    if not providers:
        raise ValueError(f"onnxruntime has no CUDA execution provider (it has {available}); "
                         "install onnxruntime-gpu, or use backend 'torch'")
    return providers + [CPU_EP]


class OrtRunner:
    """Runs one subset graph: {modality: 3xHxW float} -> (labels uint8 HxW, confidence float32 HxW);
    `graph` is the graph as exported (its logits output is cut off here)."""

    def __init__(self, graph: bytes, device: torch.device, precision: str, threads: int | None = None,
                 engine_cache: Path | None = None):
        import onnxruntime as ort

        providers = providers_for(device, precision, available_providers(), engine_cache)
        self.session = ort.InferenceSession(runtime_graph(graph), session_options(threads), providers=providers)
        self.inputs = [i.name for i in self.session.get_inputs()]
        provider = self.session.get_providers()[0]
        self.name = "onnxruntime" if provider == CPU_EP else f"onnxruntime ({provider})"
        self.last_ms = float("nan")

    def run(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        feed = {m: np.ascontiguousarray(inputs[m], dtype=np.float32)[None] for m in self.inputs}
        start = time.perf_counter()
        labels, confidence = self.session.run(["labels", "confidence"], feed)
        self.last_ms = (time.perf_counter() - start) * 1000.0
        return labels[0], confidence[0]
