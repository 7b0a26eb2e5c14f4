"""Inference runtimes behind the Predictor: torch (the reference), ONNX Runtime and TensorRT.

ONNX Runtime and TensorRT run one static-shape graph per modality subset and input size, exported
from the checkpoint (graph.py) and kept in an on-disk cache (cache.py); torch runs the model itself
and serves every frame whose graph is not ready.
"""
from __future__ import annotations

import importlib.util

import torch

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")


def installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it (TensorRT takes seconds to load)."""
    return importlib.util.find_spec(module) is not None


def resolve_backend(backend: str, device: torch.device, precision: str) -> str:
    """The concrete backend for `backend` on `device`.

    "auto": ONNX Runtime on CPU (torch for bf16, which ONNX Runtime's CPU kernels lack); on CUDA,
    TensorRT when it is installed, else ONNX Runtime when its TensorRT execution provider is present,
    else torch.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: expected one of {BACKENDS}")
    if backend != "auto":
        return backend
    if device.type == "cpu":
        return "onnxruntime" if precision in ("fp32", "int8") and installed("onnxruntime") else "torch"
    if installed("tensorrt"):
        return "tensorrt"
    from charm_core.runtimes.onnx_backend import TENSORRT_EP, available_providers

    return "onnxruntime" if TENSORRT_EP in available_providers() else "torch"
