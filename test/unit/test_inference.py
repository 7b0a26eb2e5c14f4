"""Predictor: labels/confidence match the model, subsets, validation, devices, precision, threads."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from charm_core.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
from charm_core.inference import Predictor, resolve_device
from charm_core.model import ModelConfig, build_model

CUDA = torch.cuda.is_available()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(num_classes=6)
    model = build_model(cfg)
    with torch.no_grad():
        model.decoder.linear_pred.weight.mul_(30.0)  # confident, spatially varying predictions
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    return save_checkpoint(path, model, cfg, class_names=list("abcdef"), palette=np.eye(6, 3, dtype=np.uint8) * 255)


def _frame(h: int = 60, w: int = 84, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {m: rng.standard_normal((3, h, w)).astype(np.float32) for m in ("rgb", "depth", "event", "lidar")}


def test_predict_matches_the_model(checkpoint: Path) -> None:
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    model, _ = load_checkpoint(checkpoint)
    frame = _frame()
    labels, confidence = predictor.predict(frame)
    with torch.inference_mode():
        probs = model({m: torch.from_numpy(a)[None] for m, a in frame.items()}).softmax(dim=1)[0]
    assert labels.shape == confidence.shape == (60, 84)
    assert labels.dtype == np.uint8 and confidence.dtype == np.float32
    assert np.array_equal(labels, probs.argmax(dim=0).numpy())
    np.testing.assert_allclose(confidence, probs.max(dim=0).values.numpy(), atol=1e-5)
    assert len(np.unique(labels)) > 1 and confidence.min() > 1 / 6 - 1e-6 and confidence.max() <= 1.0
    assert predictor.last_forward_ms > 0
    assert predictor.class_names == tuple("abcdef") and predictor.palette.shape == (6, 3)
    assert predictor.modalities == ("rgb", "depth", "event", "lidar") and predictor.device.type == "cpu"


def test_any_memory_layout_gives_the_same_answer(checkpoint: Path) -> None:
    """Planar, channels-last views (what the encoders return), flipped (negative strides) and float64
    inputs are all the same frame to the predictor."""
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    planar = _frame()
    labels, confidence = predictor.predict(planar)
    channels_last = {m: np.ascontiguousarray(a.transpose(1, 2, 0)).transpose(2, 0, 1) for m, a in planar.items()}
    assert all(not a.flags.c_contiguous for a in channels_last.values())
    flipped = {m: np.ascontiguousarray(a[:, ::-1])[:, ::-1] for m, a in planar.items()}
    for inputs in (channels_last, flipped, {m: a.astype(np.float64) for m, a in planar.items()}):
        got_labels, got_confidence = predictor.predict(inputs)
        assert np.array_equal(got_labels, labels)
        np.testing.assert_allclose(got_confidence, confidence, atol=1e-6)


def test_any_subset_runs_and_changes_the_answer(checkpoint: Path) -> None:
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    frame = _frame()
    full, _ = predictor.predict(frame)
    lidar_only, conf = predictor.predict({"lidar": frame["lidar"]})
    assert lidar_only.shape == (60, 84) and np.isfinite(conf).all()
    assert not np.array_equal(full, lidar_only)


@pytest.mark.parametrize("inputs,message", [
    ({}, "non-empty"),
    ({"thermal": np.zeros((3, 8, 8), np.float32)}, "not modalities"),
    ({"rgb": np.zeros((8, 8, 3), np.float32)}, "3xHxW"),
    ({"rgb": np.zeros((3, 8, 8), np.uint8)}, "float array"),
    ({"rgb": np.zeros((3, 8, 8), np.float32), "depth": np.zeros((3, 8, 9), np.float32)}, "one size"),
    ({"rgb": np.full((3, 8, 8), np.nan, np.float32)}, "NaN"),
])
def test_bad_inputs_raise(checkpoint: Path, inputs: dict, message: str) -> None:
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    with pytest.raises(ValueError, match=message):
        predictor.predict(inputs)


def test_devices_and_precisions(checkpoint: Path) -> None:
    assert resolve_device("auto").type == ("cuda" if CUDA else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="expected 'auto'"):
        resolve_device("tpu")
    if not CUDA:
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        Predictor.from_checkpoint(checkpoint, device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="precision 'int8'"):
        Predictor.from_checkpoint(checkpoint, device="cpu", precision="int8")


def test_bf16_on_cpu_agrees_with_fp32(checkpoint: Path) -> None:
    frame = _frame()
    fp32, _ = Predictor.from_checkpoint(checkpoint, device="cpu").predict(frame)
    bf16, conf = Predictor.from_checkpoint(checkpoint, device="cpu", precision="bf16").predict(frame)
    assert conf.dtype == np.float32 and (bf16 == fp32).mean() > 0.9


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_precisions_agree_with_cpu(checkpoint: Path, precision: str) -> None:
    frame = _frame()
    cpu, _ = Predictor.from_checkpoint(checkpoint, device="cpu").predict(frame)
    predictor = Predictor.from_checkpoint(checkpoint, device="cuda", precision=precision)
    labels, conf = predictor.predict(frame)
    assert labels.dtype == np.uint8 and conf.dtype == np.float32 and predictor.last_forward_ms > 0
    assert (labels == cpu).mean() > (0.999 if precision == "fp32" else 0.9)


def test_in_memory_model_and_concurrent_calls(checkpoint: Path) -> None:
    model, info = load_checkpoint(checkpoint)
    predictor = Predictor(model, info, device="cpu")
    frames = [_frame(seed=s) for s in range(4)]
    expected = [predictor.predict(f)[0] for f in frames]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = predictor.predict(frames[i % 4])[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(results[i], expected[i % 4]) for i in range(8))


def test_more_classes_than_uint8_labels_are_rejected() -> None:
    cfg = ModelConfig(num_classes=300)
    model = build_model(cfg)
    info = CheckpointInfo(Path("x"), cfg, tuple(map(str, range(300))), np.zeros((300, 3), np.uint8),
                          cfg.modalities)
    with pytest.raises(ValueError, match="uint8"):
        Predictor(model, info, device="cpu")
