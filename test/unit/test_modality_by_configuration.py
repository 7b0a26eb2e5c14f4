"""A modality of an existing kind added by configuration only: train, evaluate, predict; and a model
grown by a modality that starts from the smaller model's checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from charm_core.checkpoint import init_from_checkpoint, load_checkpoint, save_checkpoint
from charm_core.data.deliver import DeliverDataset
from charm_core.data.synthetic.export import write_dataset
from charm_core.inference import Predictor
from charm_core.modalities import all_subsets
from charm_core.model import ModelConfig, build_model
from charm_core.train.cli import eval_main, train_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RECIPE = """\
dataset: deliver
modalities:
  - rgb
  - thermal
  - {name: swir, kind: intensity, range: [0.0, 1.0]}   # a camera nothing has built in
model: {backbone: tiny}
size: [64, 64]
batch_size: 4
steps: 2
warmup_steps: 0
eval_every: 2
log_every: 1
val_max_samples: 4
workers: 0
threads: 1
"""


def _add_swir(root: Path) -> int:
    """A 16-bit short-wave-infrared folder beside the others (here: a function of the RGB image)."""
    n = 0
    for rgb in sorted(root.glob("img/*/*/*/*_rgb_front.png")):
        gray = cv2.cvtColor(cv2.imread(str(rgb)), cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257
        out = root / "swir" / rgb.relative_to(root / "img").parent / rgb.name.replace("_rgb", "_swir")
        out.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(out), 65535 - gray)
        n += 1
    return n


def test_configured_modality_trains_evaluates_and_predicts(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    write_dataset(data, {"train": 8, "val": 4}, (64, 64), seed=4, workers=1, progress=False,
                  modalities=("rgb", "thermal"))
    assert not (data / "hha").exists() and len(list(data.glob("thermal/*/*/*/*_thermal_front.png"))) == 12
    assert _add_swir(data) == 12
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    run = tmp_path / "run"
    assert train_main(["--config", str(recipe), f"data_root={data}", f"out_dir={run}", "--no-resume"]) == 0
    model, info = load_checkpoint(run / "best.safetensors")
    assert info.modalities == ("rgb", "thermal", "swir")
    assert info.config.modality_specs["swir"] == {"kind": "intensity", "range": [0.0, 1.0]}, "the checkpoint carries it"

    out = tmp_path / "eval.json"
    assert eval_main(["--checkpoint", str(run / "best.safetensors"), "--data", str(data), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [k for k in result if k not in ("mean", "top1", "last1")] == [
        "rgb", "thermal", "swir", "rgb+thermal", "rgb+swir", "thermal+swir", "rgb+thermal+swir"]
    assert "rgb+thermal+swir" in capsys.readouterr().out

    val = DeliverDataset(data, "val", info.config.specs, (64, 64))
    inputs = {m: t.numpy() for m, t in val[0][0].items()}
    assert inputs["swir"].min() >= 0 and inputs["swir"].max() <= 1 and inputs["swir"].std() > 0.01
    predictor = Predictor.from_checkpoint(run / "best.safetensors", device="cpu")
    for subset in (("swir",), ("thermal", "swir"), ("rgb", "thermal", "swir")):
        labels, confidence = predictor.predict({m: inputs[m] for m in subset})
        assert labels.shape == (64, 64) and labels.dtype == np.uint8 and (confidence > 0).all()
    with pytest.raises(ValueError, match="not modalities of this model"):
        predictor.predict({"depth": inputs["rgb"]})


def test_a_grown_model_starts_from_the_smaller_checkpoint(tmp_path: Path) -> None:
    """4 -> 5 modalities: every shared weight copied, per-modality rows matched by name, the new
    modality's parts fresh, so any subset without it answers exactly as the source model did."""
    torch.manual_seed(1)
    small_cfg = ModelConfig(mpu_blocks=1)
    small = build_model(small_cfg).eval()
    with torch.no_grad():
        for p in small.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = save_checkpoint(tmp_path / "four.safetensors", small, small_cfg)
    torch.manual_seed(2)
    grown_cfg = ModelConfig(modalities=("thermal", "rgb", "depth", "event", "lidar"), mpu_blocks=1)
    grown = build_model(grown_cfg).eval()
    fresh_thermal = grown.fusion[0].projectors["thermal"].pw.weight.clone()
    report = init_from_checkpoint(grown, path)
    assert len(report["rows"]) == 3 * 4 and not report["unused"]
    assert report["fresh"] and all(".projectors.thermal." in k for k in report["fresh"])
    assert torch.equal(grown.fusion[0].projectors["thermal"].pw.weight, fresh_thermal)
    torch.testing.assert_close(grown.fusion[2].evaluator.weight[1:], small.fusion[2].evaluator.weight)
    g = torch.Generator().manual_seed(3)
    x = {m: torch.randn(1, 3, 48, 48, generator=g) for m in grown_cfg.modalities}
    with torch.inference_mode():
        for subset in all_subsets(small_cfg.modalities):
            torch.testing.assert_close(grown({m: x[m] for m in subset}), small({m: x[m] for m in subset}),
                                       atol=1e-5, rtol=0)
        assert grown({"thermal": x["thermal"], "rgb": x["rgb"]}).shape == (1, 25, 48, 48)
