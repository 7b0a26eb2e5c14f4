"""The shipped four-modality checkpoint gives the numbers it gave before modalities became a
per-model list: charm-eval on a fixed synthetic set, every subset (values from the earlier code)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from charm_core.data.synthetic.export import write_dataset
from charm_core.train.cli import eval_main
from support import ROOT

CHECKPOINT = ROOT / "models" / "charm_tiny_synthetic.safetensors"
# charm-synth --val 4 --seed 1000 --size 256, then charm-eval on it, both with the code before this
# change (commit a555524); mIoU over classes present, in percent.
EXPECTED = {
    "rgb": 34.6709, "depth": 32.9542, "event": 22.4881, "lidar": 25.8825, "rgb+depth": 44.8915,
    "rgb+event": 37.6993, "rgb+lidar": 41.4211, "depth+event": 38.5373, "depth+lidar": 36.9347,
    "event+lidar": 29.3781, "rgb+depth+event": 45.2413, "rgb+depth+lidar": 46.6525, "rgb+event+lidar": 41.3857,
    "depth+event+lidar": 41.8856, "rgb+depth+event+lidar": 47.2205, "mean": 37.8162, "top1": 47.2205,
    "last1": 22.4881,
}


@pytest.mark.usefixtures("one_torch_thread")
def test_shipped_checkpoint_numbers_are_unchanged(tmp_path: Path) -> None:
    write_dataset(tmp_path / "data", {"val": 4}, (256, 256), seed=1000, workers=1, progress=False)
    out = tmp_path / "eval.json"
    assert eval_main(["--checkpoint", str(CHECKPOINT), "--data", str(tmp_path / "data"), "--device", "cpu",
                      "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert list(result) == list(EXPECTED)
    for name, value in EXPECTED.items():
        assert result[name] == pytest.approx(value, abs=0.01), name
