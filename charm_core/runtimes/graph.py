"""One modality subset of a model as a static-shape ONNX graph, checked against torch on export.

Graph inputs are named by modality ([1, 3, H, W] float32 each, in the model's modality order);
outputs are `labels` ([1, H, W] uint8), `confidence` ([1, H, W] float32, the top softmax
probability) and `logits` ([1, K, H, W]). Runtimes fetch labels and confidence, so the per-pixel
decision runs inside the graph (`decide_in_graph`: torch's `decide` in the ops ONNX Runtime runs
fastest); logits are there for checks.
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
from torch import Tensor, nn

OPSET = 18
FORMAT = "charm.graph/2"  # bump when the wrapper's inputs, outputs or post-processing change
OUTPUTS = ("labels", "confidence", "logits")
DEFAULT_TOLERANCE = 1e-3
_EXPORT_LOCK = threading.Lock()  # the TorchScript exporter keeps global state


class ExportError(RuntimeError):
    """A graph that could not be exported, or whose outputs differ from torch's beyond tolerance."""


def decide(logits: Tensor) -> tuple[Tensor, Tensor]:
    """logits [B, K, H, W] -> labels [B, H, W] (argmax), confidence [B, H, W] (max softmax prob)."""
    top, labels = logits.max(dim=1)
    return labels, torch.exp(top - torch.logsumexp(logits, dim=1))


def decide_in_graph(logits: Tensor) -> tuple[Tensor, Tensor]:
    """`decide` as exported: classes made the innermost axis, TopK (first index on ties, as torch's
    max) and 1 / sum(exp(l - top)), the same value as exp(top - logsumexp(l)). ONNX Runtime's
    ReduceLogSumExp, ReduceMax and ArgMax over the (strided) class axis cost twice as much: a fifth
    of the tiny model's run with one modality."""
    logits = logits.permute(0, 2, 3, 1)  # [B, H, W, K]
    top, labels = torch.topk(logits, 1, dim=-1)
    return labels[..., 0], torch.exp(logits - top).sum(dim=-1).reciprocal()


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
        logits = self.model(dict(zip(self.subset, inputs)))
        labels, confidence = decide_in_graph(logits)
        return labels.to(torch.uint8), confidence, logits


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

    from charm_core.runtimes.onnx_backend import CPU_EP, session_options

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

