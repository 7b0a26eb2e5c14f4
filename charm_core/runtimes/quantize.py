"""int8 subset graphs for ONNX Runtime on CPU: static quantization calibrated on synthetic frames.

Convolutions and matrix products with constant weights get int8 weights (per output channel) and
uint8 activations (the u8 x s8 products VNNI CPUs run fastest); normalisation, softmax, GELU, the
attention products and the argmax stay float, and so do two kinds of convolution that int8 ruins:
the depthwise ones and the first patch embedding, whose one activation range spans every modality's
raw encoding (quantizing it alone drops label agreement with fp32 to about 60%).
Calibration frames come from the synthetic world (charm_core.data.synthetic), rendered at the
graph's size and encoded by the encoders the node runs, from seeds no shipped model trains or is
evaluated on. An int8 graph is cached like the fp32 one, tied to the fp32 graph's digest, the
calibration set and the onnxruntime version that quantized it.
"""
from __future__ import annotations

import functools
import hashlib
import tempfile
from pathlib import Path

import numpy as np

from charm_core.runtimes.cache import GraphCache, cached_build
from charm_core.runtimes.graph import GraphSpec

CALIBRATION_SEED = 5000  # not a data seed: training uses 0, the README's held-out set 1000, the tests 7
CALIBRATION_FRAMES = 8
QUANTIZED_OPS = ["Conv", "MatMul", "Gemm"]


def calibration_frames(size: tuple[int, int]) -> tuple[dict[str, np.ndarray], ...]:
    """CALIBRATION_FRAMES synthetic frames {modality: float32 3xHxW}, one drive per condition in turn."""
    return _render(size, CALIBRATION_FRAMES, CALIBRATION_SEED)


@functools.lru_cache(maxsize=4)
def _render(size: tuple[int, int], count: int, seed: int) -> tuple[dict[str, np.ndarray], ...]:
    from charm_core.data.synthetic import CONDITIONS, World
    from charm_core.encoders.frame import FrameEncoder
    from charm_core.encoders.rgb import frame_to_network

    frames = []
    for i in range(count):
        world = World(seed + i, size_hw=size, condition=CONDITIONS[i % len(CONDITIONS)])
        f = world.frame_at(1.0)
        images = FrameEncoder(size, world.geometry).encode(K=f.K, image_hw=size, rgb=f.rgb, depth=f.depth,
                                                           event=f.event, lidar=f.lidar)
        frames.append({m: np.asarray(a, dtype=np.float32) for m, a in frame_to_network(images).items()})
    return tuple(frames)


def quantize_graph(graph: bytes, spec: GraphSpec) -> bytes:
    """The int8 form of an fp32 subset graph; ValueError if the calibration set lacks a modality."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quant_pre_process,
                                          quantize_static)

    frames = calibration_frames(spec.size)
    missing = sorted(set(spec.subset) - set(frames[0]))
    if missing:
        raise ValueError(f"no synthetic calibration frames for {missing}; int8 covers {sorted(frames[0])}")

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter([{m: f[m][None] for m in spec.subset} for f in frames])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, dst = (Path(tmp) / f"{name}.onnx" for name in ("fp32", "pre", "int8"))
        src.write_bytes(graph)
        # shape inference and constant folding first (the decoder's weight products become weights)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(dst), Frames(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        op_types_to_quantize=QUANTIZED_OPS, nodes_to_exclude=_float_convs(pre),
                        # attention's activation x activation products stay float
                        extra_options={"MatMulConstBOnly": True})
        return dst.read_bytes()


def _float_convs(path: Path) -> list[str]:
    """Depthwise convolutions and those reading the 3-channel network inputs."""
    import onnx

    graph = onnx.load(str(path)).graph
    in_channels = {t.name: t.dims[1] for t in graph.initializer if len(t.dims) == 4}
    keep = []
    for node in graph.node:
        if node.op_type == "Conv":
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            if group > 1 or in_channels.get(node.input[1]) == 3:
                keep.append(node.name)
    return keep


def int8_identity(spec: GraphSpec, graph: bytes) -> dict[str, str]:
    import onnxruntime

    return dict(spec.metadata(), **{
        "charm.fp32_graph_sha256": hashlib.sha256(graph).hexdigest(),
        "charm.calibration": f"synthetic seed {CALIBRATION_SEED}, {CALIBRATION_FRAMES} frames",
        "charm.quantizer": f"onnxruntime {onnxruntime.__version__} static QDQ u8s8, const-B MatMul, "
                           "float depthwise and input convs"})


def cached_int8(cache: GraphCache, spec: GraphSpec, graph: bytes) -> tuple[bytes, str]:
    """(int8 graph bytes, how): from the cache when valid, else quantized and stored."""
    return cached_build(cache.path(spec, suffix=".int8.onnx"), int8_identity(spec, graph),
                        lambda: quantize_graph(graph, spec), "quantized")
