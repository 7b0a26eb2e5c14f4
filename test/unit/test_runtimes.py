"""Graph runtimes: export, the validated cache, ONNX Runtime against torch, backend choice, TensorRT (mocked).

Acceptance on the shipped checkpoint runs a representative subset per size at CI cost; the full
check (all 15 subsets, 20 held-out frames) is the same test with CHARM_FULL_ACCEPTANCE=1 (-s prints
the figures).
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import sys
import time
import types
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from charm_core.checkpoint import load_checkpoint, save_checkpoint
from charm_core.data.deliver import DeliverDataset
from charm_core.export import main as export_main
from charm_core.inference import NOT_READY, Predictor
from charm_core.modalities import all_subsets
from charm_core.model import ModelConfig, build_model
from charm_core.runtimes import resolve_backend
from charm_core.runtimes import onnx_backend, tensorrt_backend
from charm_core.runtimes.cache import GraphCache, file_sha256, record_path, write_artifact
from charm_core.runtimes.graph import (GraphSpec, decide, exporter_version, graph_metadata, runtime_graph,
                                      upsample_and_decide)
from charm_core.train.cli import eval_main
from support import ROOT

SHIPPED = ROOT / "models" / "charm_tiny_synthetic.safetensors"
FULL = os.environ.get("CHARM_FULL_ACCEPTANCE") == "1"
# A few subset sizes in CI (cost grows with the number of graphs); every subset in the full check.
CI_SUBSETS = [("lidar",), ("rgb", "event"), ("rgb", "depth", "event", "lidar")]
SUBSETS = all_subsets(("rgb", "depth", "event", "lidar")) if FULL else CI_SUBSETS
FRAMES = 20 if FULL else 3
SMALL = (64, 64)  # plumbing tests: small graphs export fastest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _frame(size=SMALL, seed=0, modalities=("rgb", "depth", "event", "lidar")) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {m: rng.standard_normal((3, *size)).astype(np.float32) for m in modalities}


@pytest.fixture(scope="module")
def other_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    config = ModelConfig(backbone="tiny")
    path = tmp_path_factory.mktemp("other") / "other.safetensors"
    return save_checkpoint(path, build_model(config).eval(), config, provenance={"input_size": list(SMALL)})


@pytest.fixture(scope="module")
def rgb_cache(tmp_path_factory, random_checkpoint) -> Path:
    """A cache holding random_checkpoint's rgb graph at SMALL (copied by tests that damage it)."""
    root = tmp_path_factory.mktemp("cache")
    Predictor.from_checkpoint(random_checkpoint, "cpu", backend="onnxruntime", cache_dir=root).prepare(["rgb"], SMALL)
    return root


def _copy(cache: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(cache, tmp_path / "cache"))


def _graph_path(cache: Path, checkpoint: Path, subset=("rgb",), size=SMALL) -> Path:
    return GraphCache(cache).path(GraphSpec(file_sha256(checkpoint), subset, size))


def _prepared(checkpoint: Path, cache: Path) -> Predictor:
    predictor = Predictor.from_checkpoint(checkpoint, "cpu", backend="onnxruntime", cache_dir=cache)
    predictor.prepare(["rgb"], SMALL)
    return predictor


def _assert_same_as_torch(predictor: Predictor, checkpoint: Path, backend: str = "onnxruntime") -> None:
    frame = _frame(modalities=("rgb",))
    labels, confidence = predictor.predict(frame)
    assert predictor.last_backend == backend
    ref_labels, ref_confidence = Predictor.from_checkpoint(checkpoint, "cpu").predict(frame)
    assert (labels == ref_labels).mean() >= 0.999
    np.testing.assert_allclose(confidence, ref_confidence, atol=1e-4)


# ---------------------------------------------------------------------------------------- export
def test_charm_export_writes_checked_graphs_with_provenance(random_checkpoint, tmp_path, capsys):
    out = tmp_path / "graphs"
    assert export_main(["--checkpoint", str(random_checkpoint), "--out", str(out), "--subsets", "lidar+rgb",
                        "--size", "64", "64"]) == 0
    assert [p.name for p in out.iterdir()] == ["rgb+lidar.onnx"]
    graph = onnx.load(out / "rgb+lidar.onnx")
    meta = {p.key: p.value for p in graph.metadata_props}
    assert meta["charm.checkpoint_sha256"] == file_sha256(random_checkpoint)
    assert (meta["charm.subset"], meta["charm.size"], meta["charm.opset"]) == ("rgb+lidar", "64x64", "18")
    assert f"torch {torch.__version__}" in meta["charm.exporter"] and float(meta["charm.max_abs_diff"]) < 1e-3
    assert graph.opset_import[0].version == 18
    assert [i.name for i in graph.graph.input] == ["rgb", "lidar"]
    assert [o.name for o in graph.graph.output] == ["labels", "confidence", "logits"]
    assert [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 64, 64]
    # the written graph answers as torch does
    frame = _frame(modalities=("rgb", "lidar"))
    session = ort.InferenceSession(str(out / "rgb+lidar.onnx"), providers=["CPUExecutionProvider"])
    labels = session.run(["labels"], {m: a[None] for m, a in frame.items()})[0][0]
    assert labels.dtype == np.uint8
    assert (labels == Predictor.from_checkpoint(random_checkpoint, "cpu").predict(frame)[0]).mean() >= 0.999
    assert "| rgb+lidar |" in capsys.readouterr().out


class _Decision(torch.nn.Module):
    """The graphs' tail alone: 1/4-resolution logits -> upsampled channels-last -> labels, confidence."""

    def __init__(self, size: tuple[int, int]):
        super().__init__()
        self.size = size

    def forward(self, quarter: torch.Tensor):
        return upsample_and_decide(quarter, self.size)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("quarter_size,size", [((16, 16), (64, 64)), ((15, 17), (58, 67))])
def test_the_graphs_decide_on_channels_last_upsampled_logits_as_torch_does(quarter_size, size, tmp_path):
    """Sizes that are no multiple of 4 included: ONNX Runtime's Resize of the channels-last tensor
    gives F.interpolate's logits, and ArgMax + softmax give `decide`'s labels and confidence."""
    torch.manual_seed(0)
    quarter = torch.randn(1, 25, *quarter_size) * 4
    expected = F.interpolate(quarter, size=size, mode="bilinear", align_corners=False)
    labels, confidence = decide(expected)
    path = tmp_path / "decision.onnx"
    torch.onnx.export(_Decision(size), (quarter,), path, dynamo=False, opset_version=18,
                      input_names=["quarter"], output_names=["labels", "confidence", "logits"])
    graph = onnx.load(path)
    (resize,) = [n for n in graph.graph.node if n.op_type == "Resize"]
    consumers = {n.op_type: n for n in graph.graph.node if resize.output[0] in n.input}
    # the decision reads the resized tensor as it is; only the logits (for checks) are transposed back
    assert set(consumers) == {"ArgMax", "Softmax", "Transpose"} and consumers["Transpose"].output[0] == "logits"
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"quarter": quarter.numpy()})
    np.testing.assert_allclose(got[2], expected.numpy(), atol=1e-4)  # float rounding of the coordinates
    assert (got[0] == labels.numpy()).mean() >= 0.999
    np.testing.assert_allclose(got[1], confidence.numpy(), atol=1e-5)


def test_runtimes_load_the_graph_without_its_logits_and_answer_the_same(rgb_cache, random_checkpoint):
    """ONNX Runtime runs every node of a graph, fetched or not: what a runtime loads has no logits
    output and none of the nodes that only fed it, and gives the file's labels and confidence."""
    data = _graph_path(rgb_cache, random_checkpoint).read_bytes()
    full, cut = onnx.load_from_string(data), onnx.load_from_string(runtime_graph(data))
    assert [o.name for o in cut.graph.output] == ["labels", "confidence"]
    produced = {o for n in cut.graph.node for o in n.output}
    assert "logits" not in produced and len(cut.graph.node) < len(full.graph.node)
    assert {i.name for i in cut.graph.initializer} <= {i for n in cut.graph.node for i in n.input}
    feed = {"rgb": _frame(modalities=("rgb",))["rgb"][None]}
    expected = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(["labels", "confidence"], feed)
    got = ort.InferenceSession(cut.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-6)  # the same kernels, up to their last bit


def test_charm_export_answers_mistakes_in_one_line(random_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        export_main(["--checkpoint", str(random_checkpoint), "--out", str(tmp_path), "--subsets", "rgb+thermal"])
    assert exit_info.value.code == 2 and "subset 'rgb+thermal'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_main(["--checkpoint", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path)])
    assert "no such checkpoint" in capsys.readouterr().err


def test_export_fails_loudly_over_tolerance(random_checkpoint, tmp_path, capsys):
    """ONNX Runtime's kernels differ from torch's by float noise (1e-6); a tolerance below it must stop."""
    assert export_main(["--checkpoint", str(random_checkpoint), "--out", str(tmp_path), "--subsets", "rgb",
                        "--size", "64", "64", "--tolerance", "1e-9"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("charm-export: rgb at 64x64: ONNX Runtime logits differ from torch by ")
    assert err.strip().endswith("> tolerance 1e-09") and not list(tmp_path.glob("*.onnx"))


# ---------------------------------------------------------------------------------------- predictor
def test_unready_subset_is_served_by_torch_at_once_then_by_its_graph(random_checkpoint, tmp_path):
    predictor = Predictor.from_checkpoint(random_checkpoint, "cpu", backend="onnxruntime", cache_dir=tmp_path)
    frame = _frame(modalities=("rgb",))
    torch_labels, torch_confidence = predictor.predict(frame)
    assert predictor.last_backend == NOT_READY
    assert predictor.status()["pending"] == ["rgb 64x64"]  # building in the background, not waited for
    deadline = time.monotonic() + 120
    while not predictor.ready("rgb", SMALL) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert predictor.ready("rgb", SMALL), predictor.status()
    labels, confidence = predictor.predict(frame)
    assert predictor.last_backend == "onnxruntime" and predictor.last_forward_ms > 0
    assert (labels == torch_labels).mean() >= 0.999
    np.testing.assert_allclose(confidence, torch_confidence, atol=1e-4)
    assert predictor.status()["built"]["rgb 64x64"].startswith("exported")


def test_prepare_reports_progress_and_subsets_follow_the_model_order(rgb_cache, random_checkpoint, tmp_path):
    predictor = Predictor.from_checkpoint(random_checkpoint, "cpu", backend="onnxruntime", cache_dir=rgb_cache)
    calls = []
    predictor.prepare(["rgb"], SMALL, progress=lambda done, total, name: calls.append((done, total, name)))
    assert calls == [(1, 1, "rgb")] and predictor.status()["built"] == {"rgb 64x64": "cached"}
    with pytest.raises(ValueError, match=r"subset 'rgb\+sonar'"):
        predictor.prepare(["rgb+sonar"], SMALL)
    torch_only = Predictor.from_checkpoint(random_checkpoint, "cpu")
    assert torch_only.prepare().is_set() and torch_only.ready("rgb")


def test_valid_cache_is_used_without_exporting(rgb_cache, random_checkpoint, tmp_path, monkeypatch):
    cache = _copy(rgb_cache, tmp_path)

    def no_export(*args, **kwargs):
        raise AssertionError("a valid cached graph was exported again")

    monkeypatch.setattr("charm_core.runtimes.cache.export_graph", no_export)
    predictor = _prepared(random_checkpoint, cache)
    assert predictor.status()["built"]["rgb 64x64"] == "cached"
    _assert_same_as_torch(predictor, random_checkpoint)


# ---------------------------------------------------------------------------------------- cache validation
def test_graph_of_another_checkpoint_is_rebuilt_not_run(rgb_cache, random_checkpoint, other_checkpoint, tmp_path):
    cache = _copy(rgb_cache, tmp_path)
    other_cache = tmp_path / "other_cache"
    _prepared(other_checkpoint, other_cache)
    own, foreign = _graph_path(cache, random_checkpoint), _graph_path(other_cache, other_checkpoint)
    shutil.copy(foreign, own)  # a complete, self-consistent graph and record, of other weights
    shutil.copy(record_path(foreign), record_path(own))
    predictor = _prepared(random_checkpoint, cache)
    assert "charm.checkpoint_sha256" in predictor.status()["built"]["rgb 64x64"]
    assert graph_metadata(own.read_bytes())["charm.checkpoint_sha256"] == file_sha256(random_checkpoint)
    _assert_same_as_torch(predictor, random_checkpoint)


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_record"])
def test_truncated_or_corrupted_graph_is_rebuilt_not_run(rgb_cache, random_checkpoint, tmp_path, damage):
    cache = _copy(rgb_cache, tmp_path)
    path = _graph_path(cache, random_checkpoint)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":  # a weight byte deep inside: still parses, computes something else
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        record_path(path).unlink()
    predictor = _prepared(random_checkpoint, cache)
    expected = {"truncate": "truncated", "flip": "corrupted", "no_record": "no readable record"}[damage]
    assert expected in predictor.status()["built"]["rgb 64x64"]
    _assert_same_as_torch(predictor, random_checkpoint)


@pytest.mark.parametrize("where", ["both", "metadata_only"])
def test_graph_from_another_runtime_version_is_rebuilt(rgb_cache, random_checkpoint, tmp_path, where):
    """A graph an older exporter wrote (its metadata and record say so) is not reused; nor is one
    whose record was rewritten while the graph's own metadata still names another version."""
    cache = _copy(rgb_cache, tmp_path)
    path = _graph_path(cache, random_checkpoint)
    graph = onnx.load(path)
    old = exporter_version().replace(f"torch {torch.__version__}", "torch 2.0.0")
    identity = {p.key: p.value for p in graph.metadata_props if p.key != "charm.max_abs_diff"}
    onnx.helper.set_model_props(graph, dict(identity, **{"charm.exporter": old}))
    write_artifact(path, graph.SerializeToString(), identity if where == "metadata_only" else
                   dict(identity, **{"charm.exporter": old}))
    predictor = _prepared(random_checkpoint, cache)
    note = predictor.status()["built"]["rgb 64x64"]
    assert note.startswith("exported") and "charm.exporter" in note and "torch 2.0.0" in note
    assert graph_metadata(path.read_bytes())["charm.exporter"] == exporter_version()
    _assert_same_as_torch(predictor, random_checkpoint)


# ---------------------------------------------------------------------------------------- backend choice
def test_auto_backend_and_execution_providers(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda:1")
    assert resolve_backend("auto", cpu, "fp32") == "onnxruntime"
    assert resolve_backend("auto", cpu, "bf16") == "torch"
    assert resolve_backend("torch", cpu, "fp32") == "torch"
    with pytest.raises(ValueError, match="backend 'jax'"):
        resolve_backend("jax", cpu, "fp32")
    installed = {"tensorrt": True, "onnxruntime": True}
    monkeypatch.setattr("charm_core.runtimes.installed", lambda name: installed.get(name, False))
    assert resolve_backend("auto", cuda, "fp16") == "tensorrt"
    installed["tensorrt"] = False
    providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnx_backend, "available_providers", lambda: providers)
    assert resolve_backend("auto", cuda, "fp16") == "onnxruntime"
    monkeypatch.setattr(onnx_backend, "available_providers", lambda: ["CPUExecutionProvider"])
    assert resolve_backend("auto", cuda, "fp16") == "torch"

    assert onnx_backend.providers_for(cpu, "fp32", providers, None) == ["CPUExecutionProvider"]
    chosen = onnx_backend.providers_for(cuda, "fp16", providers, Path("/c"))
    assert [p if isinstance(p, str) else p[0] for p in chosen] == providers
    assert chosen[0][1] == {"device_id": 1, "trt_fp16_enable": True, "trt_engine_cache_enable": True,
                            "trt_engine_cache_path": "/c", "trt_timing_cache_enable": True,
                            "trt_timing_cache_path": "/c"}
    assert chosen[1] == ("CUDAExecutionProvider", {"device_id": 1})
    assert onnx_backend.providers_for(cuda, "fp32", providers[1:], None)[0] == ("CUDAExecutionProvider",
                                                                               {"device_id": 1})
    with pytest.raises(ValueError, match="fp16.*TensorRT execution provider"):
        onnx_backend.providers_for(cuda, "fp16", providers[1:], None)
    with pytest.raises(ValueError, match="no CUDA execution provider"):
        onnx_backend.providers_for(cuda, "fp32", ["CPUExecutionProvider"], None)


def test_backend_precisions_are_checked(random_checkpoint):
    with pytest.raises(ValueError, match="precision 'bf16': onnxruntime on cpu runs"):
        Predictor.from_checkpoint(random_checkpoint, "cpu", "bf16", backend="onnxruntime")
    with pytest.raises(ValueError, match="tensorrt' needs a CUDA device"):
        Predictor.from_checkpoint(random_checkpoint, "cpu", backend="tensorrt")
    with pytest.raises(ValueError, match="int8 runs on backend 'onnxruntime'"):
        Predictor.from_checkpoint(random_checkpoint, "cpu", "int8")


# ---------------------------------------------------------------------------------------- tensorrt (mocked)
class _FakeTensorRT(types.ModuleType):
    """Enough of the tensorrt module for the backend on CPU: the "engine" is the ONNX graph plus the
    builder flags, executed by ONNX Runtime through the buffers bound by address."""

    def __init__(self, version: str):
        super().__init__("tensorrt")
        self.__version__ = version
        self.built: list[bool] = []  # fp16 flag of every engine built
        fake = self

        class Logger:
            WARNING = 2

            def __init__(self, level): ...

        class DataType:
            FLOAT, HALF, INT32, INT64, UINT8, BOOL = "float", "half", "int32", "int64", "uint8", "bool"

        class TensorIOMode:
            INPUT, OUTPUT = "input", "output"

        class BuilderFlag:
            FP16 = "fp16"

        class Network:
            graph = b""

        class Config:
            def __init__(self):
                self.flags = set()

            def set_flag(self, flag):
                self.flags.add(flag)

        class Builder:
            def __init__(self, logger): ...

            def create_network(self, flags):
                return Network()

            def create_builder_config(self):
                return Config()

            def build_serialized_network(self, network, config):
                fake.built.append(BuilderFlag.FP16 in config.flags)
                return (b"F" if BuilderFlag.FP16 in config.flags else b"-") + network.graph

        class OnnxParser:
            num_errors = 0

            def __init__(self, network, logger):
                self.network = network

            def parse(self, data):
                self.network.graph = bytes(data)
                return True

        class Engine:
            def __init__(self, data: bytes):
                self.session = ort.InferenceSession(data[1:], providers=["CPUExecutionProvider"])
                self.io = [(i, TensorIOMode.INPUT) for i in self.session.get_inputs()] + \
                          [(o, TensorIOMode.OUTPUT) for o in self.session.get_outputs()]
                self.num_io_tensors = len(self.io)

            def _arg(self, name):
                return next(a for a, _ in self.io if a.name == name)

            def get_tensor_name(self, i):
                return self.io[i][0].name

            def get_tensor_shape(self, name):
                return self._arg(name).shape

            def get_tensor_dtype(self, name):
                return {"tensor(float)": DataType.FLOAT, "tensor(uint8)": DataType.UINT8}[self._arg(name).type]

            def get_tensor_mode(self, name):
                return next(mode for a, mode in self.io if a.name == name)

            def create_execution_context(self):
                return Context(self)

        class Context:
            def __init__(self, engine):
                self.engine, self.addresses = engine, {}

            def set_tensor_address(self, name, address):
                self.addresses[name] = address

            def _view(self, arg) -> np.ndarray:
                dtype = np.float32 if arg.type == "tensor(float)" else np.uint8
                count = int(np.prod(arg.shape))
                raw = (ctypes.c_byte * (count * np.dtype(dtype).itemsize)).from_address(self.addresses[arg.name])
                return np.frombuffer(raw, dtype=dtype).reshape(arg.shape)

            def execute_async_v3(self, stream):
                session = self.engine.session
                feed = {i.name: self._view(i).copy() for i in session.get_inputs()}
                for arg, value in zip(session.get_outputs(), session.run(None, feed)):
                    self._view(arg)[...] = value
                return True

        class Runtime:
            def __init__(self, logger): ...

            def deserialize_cuda_engine(self, data):
                return Engine(bytes(data))

        for cls in (Logger, DataType, TensorIOMode, BuilderFlag, Builder, OnnxParser, Runtime):
            setattr(self, cls.__name__, cls)


def test_tensorrt_engines_are_built_fp16_cached_and_bound_by_address(rgb_cache, random_checkpoint, tmp_path,
                                                                    monkeypatch):
    """The TensorRT path on CPU with the tensorrt module mocked: nothing here is measured on a GPU."""
    cache = _copy(rgb_cache, tmp_path)
    fake = _FakeTensorRT("10.9.0")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    tensorrt_backend._logger.cache_clear()
    monkeypatch.setattr("charm_core.inference.check_precision", lambda *args: None)  # CUDA-only otherwise
    monkeypatch.setattr("charm_core.inference.resolve_backend", lambda backend, device, precision: backend)

    def prepared() -> Predictor:
        predictor = Predictor.from_checkpoint(random_checkpoint, "cpu", "fp16", backend="tensorrt", cache_dir=cache)
        predictor.prepare(["rgb"], SMALL)
        return predictor

    predictor = prepared()
    assert fake.built == [True] and "engine built" in predictor.status()["built"]["rgb 64x64"]
    _assert_same_as_torch(predictor, random_checkpoint, "tensorrt")

    assert prepared().status()["built"]["rgb 64x64"] == "graph cached; engine cached" and fake.built == [True]
    fake.__version__ = "10.10.0"  # an engine of another TensorRT version is rebuilt
    note = prepared().status()["built"]["rgb 64x64"]
    assert fake.built == [True, True] and "charm.tensorrt" in note and "10.9.0" in note


# ---------------------------------------------------------------------------------------- acceptance 1
@pytest.fixture(scope="module")
def held_out(tmp_path_factory) -> Path:
    """Synthetic frames from a seed the shipped checkpoint never saw (it trained on seed 0)."""
    from charm_core.data.synthetic.export import write_dataset

    root = tmp_path_factory.mktemp("held_out")
    write_dataset(root, {"val": FRAMES}, (256, 256), seed=7, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def shipped_cache(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shipped_cache")
    Predictor.from_checkpoint(SHIPPED, "cpu", backend="onnxruntime", cache_dir=root).prepare(SUBSETS, (256, 256))
    return root


@pytest.mark.slow
def test_onnxruntime_logits_and_labels_match_torch_on_held_out_frames(held_out, shipped_cache):
    model, info = load_checkpoint(SHIPPED)
    data = DeliverDataset(held_out, "val", info.modalities, (256, 256))
    assert len(data) == FRAMES
    digest, rows = file_sha256(SHIPPED), []
    for subset in SUBSETS:
        graph = GraphCache(shipped_cache).path(GraphSpec(digest, subset, (256, 256)))
        session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
        worst, agree = 0.0, []
        for i in range(len(data)):
            inputs = {m: x[None] for m, x in data[i][0].items() if m in subset}
            with torch.inference_mode():
                expected = model(inputs).numpy()
            labels, logits = session.run(["labels", "logits"], {m: x.numpy() for m, x in inputs.items()})
            worst = max(worst, float(np.abs(logits - expected).max()))
            agree.append((labels == expected.argmax(1)).mean())
        rows.append(("+".join(subset), worst, float(np.mean(agree))))
    print("\n| subset | max |logit diff| | argmax agreement |\n" +
          "\n".join(f"| {n} | {d:.2g} | {a:.5f} |" for n, d, a in rows))
    assert all(d <= 1e-3 for _, d, _ in rows) and all(a >= 0.999 for _, _, a in rows), rows


@pytest.mark.slow
def test_charm_eval_onnxruntime_matches_torch_per_subset(held_out, shipped_cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CHARM_CACHE_DIR", str(shipped_cache))
    names = ["+".join(s) for s in SUBSETS]
    scores = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / f"{backend}.json"
        assert eval_main(["--checkpoint", str(SHIPPED), "--data", str(held_out), "--backend", backend,
                          "--subsets", *names, "--json", str(out)]) == 0
        assert f"served by: {backend}\n" in capsys.readouterr().out  # no frame fell back to torch
        scores[backend] = json.loads(out.read_text())
    print("\n| subset | mIoU torch | mIoU onnxruntime |\n" +
          "\n".join(f"| {n} | {scores['torch'][n]:.3f} | {scores['onnxruntime'][n]:.3f} |" for n in names))
    assert all(abs(scores["torch"][n] - scores["onnxruntime"][n]) <= 0.05 for n in names), scores
    assert min(scores["torch"][n] for n in names) > 5.0  # a trained model on frames it can segment


def test_int8_graphs_are_calibrated_cached_and_keep_fragile_convs_float(rgb_cache, random_checkpoint, tmp_path,
                                                                       monkeypatch):
    cache = _copy(rgb_cache, tmp_path)
    monkeypatch.setattr("charm_core.runtimes.quantize.CALIBRATION_FRAMES", 2)  # CI time: two show the cache

    def prepared() -> Predictor:
        predictor = Predictor.from_checkpoint(random_checkpoint, "cpu", "int8", backend="onnxruntime", cache_dir=cache)
        predictor.prepare(["rgb"], SMALL)
        return predictor

    predictor = prepared()
    assert predictor.status()["built"]["rgb 64x64"].startswith("graph cached; int8 quantized")
    labels, confidence = predictor.predict(_frame(modalities=("rgb",)))
    assert predictor.last_backend == "onnxruntime" and labels.dtype == np.uint8 and labels.max() < 25
    graph = onnx.load(GraphCache(cache).path(GraphSpec(file_sha256(random_checkpoint), ("rgb",), SMALL),
                                             suffix=".int8.onnx"))
    quantized = {n.output[0] for n in graph.graph.node if n.op_type == "DequantizeLinear"}  # weights read through DQ
    float_convs = [n for n in graph.graph.node if n.op_type == "Conv" and n.input[1] not in quantized]
    assert any("patch_embed1" in n.name for n in float_convs)  # the raw-input conv stays float
    assert all(any(a.name == "group" and a.i > 1 for a in n.attribute) or "patch_embed1" in n.name
               for n in float_convs)  # every other float conv is depthwise
    assert any(n.op_type == "Conv" and n.input[1] in quantized for n in graph.graph.node)
    assert prepared().status()["built"]["rgb 64x64"] == "graph cached; int8 cached"
