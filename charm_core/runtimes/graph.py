"""One modality subset of a model as a static-shape ONNX graph, checked against torch on export.

Graph inputs are named by modality ([1, 3, H, W] float32 each, in the model's modality order);
outputs are `labels` ([1, H, W] uint8), `confidence` ([1, H, W] float32, the top softmax
probability) and `logits` ([1, K, H, W]). Runtimes fetch labels and confidence, so the per-pixel
decision runs inside the graph (`decide_in_graph`: torch's `decide` in the ops ONNX Runtime runs
fastest, on logits upsampled channels-last); logits are there for checks, and `runtime_graph` drops
them from what a runtime loads.
The graph's metadata_props say where it came from (checkpoint digest, subset, size, exporter), so a
graph can be matched to a request without trusting its file name.
"""
from __future__ import annotations

import io
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

OPSET = 18
FORMAT = "charm.graph/3"  # bump when the wrapper's inputs, outputs or post-processing change
OUTPUTS = ("labels", "confidence", "logits")
RUNTIME_OUTPUTS = ("labels", "confidence")
DEFAULT_TOLERANCE = 1e-3
_EXPORT_LOCK = threading.Lock()  # the TorchScript exporter keeps global state


class ExportError(RuntimeError):
    """A graph that could not be exported, or whose outputs differ from torch's beyond tolerance."""


def decide(logits: Tensor) -> tuple[Tensor, Tensor]:
    """logits [B, K, H, W] -> labels [B, H, W] (argmax), confidence [B, H, W] (max softmax prob)."""
    top, labels = logits.max(dim=1)
    return labels, torch.exp(top - torch.logsumexp(logits, dim=1))


def decide_in_graph(logits: Tensor) -> tuple[Tensor, Tensor]:
    """`decide` on channels-last logits [B, H, W, K], as exported: ArgMax (the first index on ties,
    as torch's max) and the largest softmax probability, both over the innermost (class) axis.
    In ONNX Runtime at 256x256 these take 3.8 ms, TopK of the probabilities 5.1 ms, and the same
    reductions over a strided class axis twice as long."""
    return logits.argmax(dim=-1), logits.softmax(dim=-1).amax(dim=-1)


class ResizeChannelsLast(torch.autograd.Function):
    """Bilinear resize of the spatial axes of a [B, h, w, C] map, with F.interpolate's values
    (align_corners=False), exported as one ONNX Resize of the channels-last tensor. ONNX Runtime
    then resizes in that layout, where it would otherwise upsample the 25 class maps in its blocked
    channel layout and convert the result at full resolution: 2-3 ms of the tiny model's run."""

    @staticmethod
    def forward(ctx, x: Tensor, shape: tuple[int, int, int, int]) -> Tensor:
        """x [B, h, w, C] -> [B, H, W, C] = `shape` (B and C as x's: the exporter sees no shapes)."""
        nchw = F.interpolate(x.permute(0, 3, 1, 2), size=shape[1:3], mode="bilinear", align_corners=False)
        return nchw.permute(0, 2, 3, 1)

    @staticmethod
    def symbolic(g, x, shape: tuple[int, int, int, int]):
        empty = g.op("Constant", value_t=torch.tensor([], dtype=torch.float32))
        sizes = g.op("Constant", value_t=torch.tensor(shape, dtype=torch.int64))
        return g.op("Resize", x, empty, empty, sizes, mode_s="linear", coordinate_transformation_mode_s="half_pixel",
                    cubic_coeff_a_f=-0.75, nearest_mode_s="floor")


def upsample_and_decide(quarter: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """The graphs' tail: the head's logits [B, K, h, w] -> labels [B, H, W] uint8, confidence [B, H, W]
    and logits [B, K, H, W], upsampled channels-last and decided there (`size` = (H, W))."""
    shape = tuple(int(n) for n in (quarter.shape[0], size[0], size[1], quarter.shape[1]))
    logits = ResizeChannelsLast.apply(quarter.permute(0, 2, 3, 1), shape)  # [B, H, W, K]
    labels, confidence = decide_in_graph(logits)
    return labels.to(torch.uint8), confidence, logits.permute(0, 3, 1, 2)


def exporter_version() -> str:
    """What produced a graph; a graph made by anything else is rebuilt, never run."""
    return f"{FORMAT}; torch {torch.__version__}; torchscript exporter; opset {OPSET}"


def subset_key(subset: tuple[str, ...]) -> str:
    """File-name form of a subset ('rgb+lidar')."""
    return "+".join(subset)


def parse_subset(subset: str | Iterable[str], modalities: tuple[str, ...]) -> tuple[str, ...]:
    """'lidar+rgb' or ('lidar', 'rgb') -> ('rgb', 'lidar'): the subset in the model's modality order."""
    names = subset.split("+") if isinstance(subset, str) else list(subset)
    unknown = sorted(set(names) - set(modalities))
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"subset {subset!r}: expected distinct names from {list(modalities)} joined by '+'")
    return tuple(m for m in modalities if m in names)


@dataclass(frozen=True)
class GraphSpec:
    """What a graph is: the weights it came from, the subset it takes and the size it was fixed at."""

    checkpoint_sha256: str
    subset: tuple[str, ...]  # in the model's modality order
    size: tuple[int, int]  # H, W

    @property
    def name(self) -> str:
        return subset_key(self.subset)

    def metadata(self) -> dict[str, str]:
        """The metadata_props a graph of this spec carries (all of them must match to reuse it)."""
        return {"charm.checkpoint_sha256": self.checkpoint_sha256, "charm.subset": self.name,
                "charm.size": f"{self.size[0]}x{self.size[1]}", "charm.opset": str(OPSET),
                "charm.exporter": exporter_version()}


class SubsetGraph(nn.Module):
    """The model on a fixed subset, positional inputs (what the exporter traces)."""

    def __init__(self, model: nn.Module, subset: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.subset = subset

    def forward(self, *inputs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        quarter = self.model(dict(zip(self.subset, inputs)), upsample=False)  # [B, K, H/4, W/4]
        return upsample_and_decide(quarter, tuple(inputs[0].shape[2:]))


@dataclass(frozen=True)
class ExportedGraph:
    data: bytes  # the serialized ONNX model, metadata included
    max_abs_diff: float  # max |logit difference| ONNX Runtime vs torch on the check inputs
    seconds: float


def export_graph(model: nn.Module, spec: GraphSpec, tolerance: float = DEFAULT_TOLERANCE,
                 seed: int = 0) -> ExportedGraph:
    """Trace `model` on `spec.subset` at `spec.size`, run the graph in ONNX Runtime (CPU) on seeded
    random inputs and compare with torch; ExportError when max |logit difference| > tolerance.

    `model` must be an eval-mode CPU model in float32 (what checkpoints load as).
    """
    import onnx
    import onnxruntime as ort

    from charm_core.runtimes.ort_session import CPU_EP, session_options

    start = time.perf_counter()
    wrapper = SubsetGraph(model, spec.subset).eval()  # eval: the exporter restores the wrapper's mode
    g = torch.Generator().manual_seed(seed)
    inputs = tuple(torch.randn(1, 3, *spec.size, generator=g) for _ in spec.subset)
    with torch.inference_mode():
        expected = wrapper(*inputs)[2].numpy()  # also caches the model's window plans: constants in the trace
    buffer = io.BytesIO()
    with _EXPORT_LOCK, warnings.catch_warnings():
        # Tracing warns about Python-level shape logic; shapes are fixed by design here.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            torch.onnx.export(wrapper, inputs, buffer, dynamo=False, opset_version=OPSET,
                              input_names=list(spec.subset), output_names=list(OUTPUTS))
        except Exception as exc:  # the exporter raises many types; the subset and size say what failed
            raise ExportError(f"{spec.name} at {spec.size[0]}x{spec.size[1]}: ONNX export failed: {exc}") from exc
    graph = onnx.load_from_string(buffer.getvalue())
    session = ort.InferenceSession(graph.SerializeToString(), session_options(), providers=[CPU_EP])
    got = session.run(["logits"], {m: x.numpy() for m, x in zip(spec.subset, inputs)})[0]
    diff = float(np.abs(got - expected).max())
    if not diff <= tolerance:  # also catches NaN
        raise ExportError(f"{spec.name} at {spec.size[0]}x{spec.size[1]}: ONNX Runtime logits differ from "
                          f"torch by {diff:.3g} > tolerance {tolerance:g}")
    meta = dict(spec.metadata(), **{"charm.max_abs_diff": f"{diff:.3g}"})
    onnx.helper.set_model_props(graph, meta)
    return ExportedGraph(graph.SerializeToString(), diff, time.perf_counter() - start)


def graph_metadata(data: bytes) -> dict[str, str]:
    """metadata_props of a serialized graph; ValueError when it does not parse."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        graph = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"not an ONNX model: {exc}") from exc
    return {p.key: p.value for p in graph.metadata_props}


def runtime_graph(data: bytes) -> bytes:
    """A serialized graph cut down to the outputs runtimes fetch (labels, confidence).

    ONNX Runtime runs every node of a graph whether its output is fetched or not, so the logits
    kept in the file for checks would cost a full-resolution transpose on every frame.
    """
    import onnx
    import onnx.utils

    graph = onnx.load_from_string(data)
    inputs = [i.name for i in graph.graph.input]
    return onnx.utils.Extractor(graph).extract_model(inputs, list(RUNTIME_OUTPUTS)).SerializeToString()
