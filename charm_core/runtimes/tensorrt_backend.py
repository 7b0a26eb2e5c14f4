"""TensorRT: engines built from the same subset graphs as ONNX Runtime runs, fp16 or fp32, cached.

TensorRT is an optional install (a GPU machine's `pip install tensorrt`), imported only when this
backend is used. Device buffers are torch tensors bound by address, so no CUDA Python bindings are
needed beyond torch's. An engine is tied to the TensorRT version and the GPU that built it; its
cache record says both, and one built elsewhere is rebuilt.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import time

import numpy as np
import torch

from charm_core.runtimes.cache import GraphCache, cached_build
from charm_core.runtimes.graph import GraphSpec, runtime_graph

ENGINE_PRECISIONS = ("fp32", "fp16")


def _tensorrt():
    try:
        import tensorrt
    except ImportError as exc:
        raise ValueError("backend 'tensorrt' needs TensorRT (pip install tensorrt on a CUDA machine; "
                         "see docs/runtimes.md)") from exc
    return tensorrt


@functools.lru_cache(maxsize=1)
def _logger():
    trt = _tensorrt()
    return trt.Logger(trt.Logger.WARNING)


def _current(device: torch.device) -> contextlib.AbstractContextManager:
    """Make `device` current: TensorRT builds and runs on the current CUDA device."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def build_engine(graph: bytes, precision: str) -> bytes:
    """A serialized engine for an exported ONNX graph, built without its logits output (static shapes: no
    optimisation profile needed)."""
    trt = _tensorrt()
    builder = trt.Builder(_logger())
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, _logger())
    if not parser.parse(runtime_graph(graph)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse the graph: {errors}")
    config = builder.create_builder_config()
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT could not build an engine (its log above says why)")
    return bytes(plan)


def engine_identity(spec: GraphSpec, graph: bytes, precision: str, device: torch.device) -> dict[str, str]:
    """What an engine must have been built from and by to be reused."""
    trt = _tensorrt()
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        gpu = f"{torch.cuda.get_device_name(device)} (sm_{major}{minor})"
    else:
        gpu = device.type
    return dict(spec.metadata(), **{"charm.graph_sha256": hashlib.sha256(graph).hexdigest(),
                                    "charm.tensorrt": trt.__version__, "charm.gpu": gpu,
                                    "charm.precision": precision})


def cached_engine(cache: GraphCache, spec: GraphSpec, graph: bytes, precision: str,
                  device: torch.device) -> tuple[bytes, str]:
    """(engine bytes, how): from the cache when valid, else built and stored."""
    def build() -> bytes:
        with _current(device):
            return build_engine(graph, precision)

    return cached_build(cache.path(spec, "engines", f".{precision}.plan"),
                        engine_identity(spec, graph, precision, device), build, "built")

class TrtRunner:
    """Runs one engine: {modality: 3xHxW float} -> (labels uint8 HxW, confidence float32 HxW)."""

    def __init__(self, engine: bytes, device: torch.device):
        with _current(device):
            self._load(engine, device)
        self.name = "tensorrt"
        self.last_ms = float("nan")

    def _load(self, engine: bytes, device: torch.device) -> None:
        trt = _tensorrt()
        self.device = device
        self._runtime = trt.Runtime(_logger())
        self.engine = self._runtime.deserialize_cuda_engine(engine)
        if self.engine is None:
            raise RuntimeError("TensorRT could not deserialize the engine")
        self.context = self.engine.create_execution_context()
        dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
                  trt.DataType.INT32: torch.int32, trt.DataType.INT64: torch.int64,
                  trt.DataType.UINT8: torch.uint8, trt.DataType.BOOL: torch.bool}
        self.buffers: dict[str, torch.Tensor] = {}
        self.inputs: list[str] = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            self.buffers[name] = torch.empty(shape, dtype=dtypes[self.engine.get_tensor_dtype(name)], device=device)
            self.context.set_tensor_address(name, self.buffers[name].data_ptr())
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs.append(name)

    def run(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        with _current(self.device):
            return self._run(inputs)

    def _run(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        for m in self.inputs:
            self.buffers[m][0].copy_(torch.from_numpy(np.ascontiguousarray(inputs[m], dtype=np.float32)))
        cuda = self.device.type == "cuda"
        # torch's stream: the copies above and the engine run in order on it.
        stream = torch.cuda.current_stream(self.device).cuda_stream if cuda else 0
        start = time.perf_counter()
        if not self.context.execute_async_v3(stream):
            raise RuntimeError("TensorRT execution failed")
        if cuda:
            torch.cuda.synchronize(self.device)
        self.last_ms = (time.perf_counter() - start) * 1000.0
        labels = self.buffers["labels"][0].to(torch.uint8).cpu().numpy()
        return labels, self.buffers["confidence"][0].float().cpu().numpy()
