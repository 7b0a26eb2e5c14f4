"""training/modality_gain.py pairs each subset with the subset plus one modality, per condition."""
import importlib.util
import json

from support import ROOT

spec = importlib.util.spec_from_file_location("modality_gain", ROOT / "training" / "modality_gain.py")
modality_gain = importlib.util.module_from_spec(spec)
spec.loader.exec_module(modality_gain)


def details(values: dict[str, tuple[float, float]]) -> dict:
    return {"subsets": {name: {} for name in values},
            "per_condition": {name: {"night": {"miou_present": n}, "fog": {"miou_present": f}}
                              for name, (n, f) in values.items()}}


def test_every_rgb_subset_is_paired_with_its_thermal_twin_in_model_order(tmp_path, capsys):
    d = details({"rgb": (20.0, 30.0), "lidar": (10.0, 10.0), "rgb+lidar": (25.0, 35.0),
                 "thermal": (15.0, 12.0), "rgb+thermal": (28.0, 31.0), "lidar+thermal": (12.0, 11.0),
                 "rgb+lidar+thermal": (24.0, 36.0)})
    table, helped, pairs = modality_gain.gain_table(d, "thermal", ["rgb"], ["night", "fog"])
    rows = [line for line in table.splitlines() if line.startswith("| rgb")]
    assert rows == ["| rgb | rgb+thermal | 20.0 / 28.0 / +8.0 | 30.0 / 31.0 / +1.0 |",
                    "| rgb+lidar | rgb+lidar+thermal | 25.0 / 24.0 / -1.0 | 35.0 / 36.0 / +1.0 |"]
    assert (helped, pairs) == (1, 2), "rgb+lidar lost mIoU at night"
    path = tmp_path / "details.json"
    path.write_text(json.dumps(d))
    assert modality_gain.main(["--details", str(path), "--add", "thermal", "--with", "rgb",
                               "--conditions", "night", "rain"]) == 2
    assert "no frames of condition ['rain']" in capsys.readouterr().err
