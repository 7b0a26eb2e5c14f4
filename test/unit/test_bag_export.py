"""charm-bag-export: a recording becomes a DELIVER-layout set of exactly what the node feeds the model,
which loads, trains and evaluates."""
import json

import numpy as np
import pytest
import torch

from charm_core.data.deliver import DeliverDataset
from charm_core.inference import Predictor
from charm_core.train.cli import eval_main, train_main
from charm_ros.runtime.node_config import validate
from charm_ros.runtime.parameters import load_param_file
from charm_ros.bags.evaluator import BagEvaluator
from charm_ros.bags.reader import read_in_stamp_order
from charm_ros.bags.topics import DEFAULT_TOPICS
from charm_ros.tools.bag_export import main as export_main
from charm_ros.tools.bag_record import main as record_main
from support import ROOT

PARAMS = ROOT / "config" / "charm.param.yaml"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    bag = tmp_path_factory.mktemp("bags") / "drive"
    assert record_main(["--out", str(bag), "--duration", "2", "--size", "128", "160", "--seed", "4"]) == 0
    return bag


def fed_to_the_model(bag, checkpoint) -> list[dict[str, np.ndarray]]:
    """The network inputs the node's engine gives the model for each frame of the bag, in order."""
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    seen = []
    real = predictor.predict
    predictor.predict = lambda inputs: (seen.append({k: v.copy() for k, v in inputs.items()}), real(inputs))[1]
    evaluator = BagEvaluator(predictor, validate(load_param_file(PARAMS)), DEFAULT_TOPICS)
    for topic, msg, at, received in read_in_stamp_order(bag, set(evaluator.topics.values())):
        evaluator.feed(topic, msg, at, received)
    evaluator.finish()
    return seen


@pytest.mark.slow
def test_record_export_train_evaluate_and_the_exported_sample_is_what_the_node_fed(recorded, random_checkpoint,
                                                                                   tmp_path, capsys):
    out = tmp_path / "set"
    assert export_main([str(recorded), "--out", str(out), "--checkpoint", str(random_checkpoint)]) == 0
    meta = json.loads((out / "export.json").read_text())
    assert meta["frames"] == meta["labelled"] == meta["synchronized"] == 20
    for folder in ("img", "hha", "event", "lidar", "semantic"):
        assert len(list((out / folder).rglob("*.png"))) == 20, folder

    data = DeliverDataset(out, "train", ("rgb", "depth", "event", "lidar"), size=(256, 256))
    inputs, labels = data[0]
    fed = fed_to_the_model(recorded, random_checkpoint)[0]
    assert set(inputs) == set(fed)
    for m in fed:
        assert torch.equal(inputs[m], torch.from_numpy(fed[m])), f"{m}: exported sample differs from the node's input"
    assert labels.shape == (256, 256) and (labels[205:] == 255).all(), "letterbox padding (rows 205..) is unlabelled"
    assert (labels[:200] != 255).float().mean() > 0.9

    run = tmp_path / "run"
    assert train_main([f"data_root={out}", f"out_dir={run}", "model.backbone=tiny", "size=[64, 64]", "steps=20",
                       "warmup_steps=0", "batch_size=2", "workers=0", "threads=1", "eval_every=100",
                       "checkpoint_every=100", "val_split=train", "val_max_samples=4"]) == 0
    assert eval_main(["--checkpoint", str(run / "last.safetensors"), "--data", str(out), "--split", "train",
                      "--size", "64", "64", "--max-samples", "4", "--device", "cpu"]) == 0
    assert "rgb+depth+event+lidar" in capsys.readouterr().out


def test_frame_selection_and_an_existing_output_are_checked(recorded, random_checkpoint, tmp_path):
    out = tmp_path / "some"
    assert export_main([str(recorded), "--out", str(out), "--checkpoint", str(random_checkpoint), "--every", "3",
                        "--max-frames", "4", "--gt", ""]) == 0
    meta = json.loads((out / "export.json").read_text())
    assert meta["frames"] == 4 and meta["labelled"] == 0 and not (out / "semantic").exists()
    with pytest.raises(SystemExit):
        export_main([str(recorded), "--out", str(out), "--checkpoint", str(random_checkpoint)])
