"""The dual-path trainer: it learns, it resumes exactly, it writes what a run needs; and charm-eval."""
import json

import pytest
import torch

from charm_core.data.deliver import DeliverDataset
from charm_core.train.cli import eval_main, train_main
from charm_core.train.config import load_config
from charm_core.train.trainer import EvalBatches, Trainer, collate
from support import ROOT

TINY = ["model.backbone=tiny", "size=[64, 64]", "batch_size=4", "workers=0", "threads=1", "val_max_samples=4"]


def make_trainer(root, out, *extra) -> Trainer:
    return Trainer(load_config(None, [f"data_root={root}", f"out_dir={out}", *TINY, *extra]))


def test_overfits_one_batch_under_col_and_ine(small_dataset, tmp_path):
    torch.manual_seed(0)
    trainer = make_trainer(small_dataset, tmp_path, "steps=60", "warmup_steps=0", "lr=2e-3", "ine=softmin")
    trainer.train_set.augment = False
    inputs, labels = collate([trainer.train_set[i] for i in range(4)])
    losses = [trainer.train_step(inputs, labels) for _ in range(60)]
    first = sum(r.col for r in losses[:4]) / 4
    last = sum(r.col for r in losses[-4:]) / 4
    assert last < 0.5 * first, f"CoL loss {first:.3f} -> {last:.3f}"
    assert all(r.ine is not None and r.ine_modality in ("rgb", "depth", "event", "lidar") for r in losses)
    assert trainer.sampler.counts.sum() == 60


def test_resume_reproduces_the_next_step_loss(small_dataset, tmp_path):
    common = ("steps=4", "warmup_steps=1", "log_every=1", "eval_every=100", "checkpoint_every=100", "seed=5",
              "model.drop_path=0.1")
    torch.manual_seed(123)
    straight = make_trainer(small_dataset, tmp_path / "a", *common)
    straight.fit(resume=False)
    reference = [json.loads(line)["loss"] for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]

    make_trainer(small_dataset, tmp_path / "b", *common).fit(resume=False, stop_at=2)
    with (tmp_path / "b" / "metrics.jsonl").open("a") as log:   # a crash after logging past the checkpoint
        log.write(json.dumps({"step": 3, "time_s": 999.0, "loss": -1.0}) + "\n")
    torch.manual_seed(999)  # the resumed run must not depend on the fresh process's RNG
    resumed = make_trainer(small_dataset, tmp_path / "b", *common)
    resumed.fit(resume=True)
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]                  # the stale tail is gone
    assert rows[1]["time_s"] <= rows[2]["time_s"] < 999.0            # the clock continues from the checkpoint
    assert resumed.step == 4
    assert losses[2] == pytest.approx(reference[2], rel=1e-6, abs=1e-7)
    assert losses[3] == pytest.approx(reference[3], rel=1e-6, abs=1e-7)
    for name in ("best.safetensors", "last.safetensors", "last.state.safetensors", "metrics.png", "recipe.json"):
        assert (tmp_path / "a" / name).is_file(), name


@pytest.mark.parametrize("arch,ine", [("mean", "off"), ("align", "off"), ("charm", "uniform")])
def test_baselines_and_ablations_train(small_dataset, tmp_path, arch, ine):
    trainer = make_trainer(small_dataset, tmp_path, "steps=2", "warmup_steps=0", f"model.arch={arch}", f"ine={ine}",
                           "eval_every=100")
    inputs, labels = collate([trainer.train_set[i] for i in range(4)])
    result = trainer.train_step(inputs, labels)
    assert (result.aux is not None) == (arch == "align")
    assert (result.ine is None) == (ine == "off")


def test_isolated_ine_leaves_the_backbone_to_col(small_dataset, tmp_path):
    trainer = make_trainer(small_dataset, tmp_path, "steps=2", "warmup_steps=0", "ine_isolated=true")
    inputs, labels = collate([trainer.train_set[i] for i in range(4)])
    model = trainer.model
    single = model({"depth": inputs["depth"]}, None, detach_backbone=True)
    trainer.loss_fn(single, labels).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert any(p.grad is not None for p in model.decoder.parameters())


def test_charm_eval_reports_all_subsets(small_dataset, tmp_path, capsys):
    trainer = make_trainer(small_dataset, tmp_path / "run", "steps=2", "warmup_steps=0", "eval_every=2")
    best = trainer.fit(resume=False)
    out = tmp_path / "eval.json"
    assert eval_main(["--checkpoint", str(best), "--data", str(small_dataset), "--split", "val", "--json", str(out),
                      "--details", str(tmp_path / "details.json"), "--plot", str(tmp_path / "eval.png")]) == 0
    table = capsys.readouterr().out
    assert "**Last-1**" in table and "rgb+depth+event+lidar" in table
    result = json.loads(out.read_text())
    subsets = [k for k in result if k not in ("mean", "top1", "last1")]
    assert len(subsets) == 15 and "rgb+depth" in subsets and "depth+rgb" not in subsets
    values = [result[k] for k in subsets]
    assert result["top1"] == max(values) and result["last1"] == min(values)
    assert result["mean"] == pytest.approx(sum(values) / 15, abs=1e-3)
    details = json.loads((tmp_path / "details.json").read_text())
    assert set(details["subsets"]["rgb"]["per_class"]) >= {"Road", "Sky"}
    assert (tmp_path / "eval.png").stat().st_size > 1000


def test_eval_batches_are_sized_and_cover_every_index_once(small_dataset):
    data = DeliverDataset(small_dataset, "val", ("rgb", "depth"), (64, 64))
    batches = EvalBatches(data, [0, 2, 3, 5, 7], batch_size=2)
    assert len(batches) == 3  # the progress bar's total: 2 + 2 + 1
    sizes = [labels.shape[0] for _, labels, _ in batches]
    assert sizes == [2, 2, 1]
    _, labels, conditions = next(iter(batches))
    assert torch.equal(labels[1], collate([data[2]])[1][0]) and conditions[1] == data.samples[2].condition
    with pytest.raises(ValueError, match="batch_size"):
        EvalBatches(data, [0], batch_size=0)


def test_train_cli_takes_overrides_on_both_sides_of_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_main(["steps=1", "--no-resume", "bogus=2"])
    assert exit_info.value.code == 2
    assert "unknown training options ['bogus']" in capsys.readouterr().err  # both overrides reached the recipe


@pytest.mark.parametrize("recipe", sorted((ROOT / "training").glob("*.yaml")), ids=lambda p: p.name)
def test_recipes_are_valid(recipe):
    cfg = load_config(recipe)
    assert cfg.model_config().arch == "charm" and cfg.steps > cfg.warmup_steps
    with pytest.raises(ValueError, match="unknown training options"):
        load_config(recipe, ["no_such_option=1"])


def test_recipe_init_from_starts_the_model_from_the_file(small_dataset, tmp_path, random_checkpoint, capsys):
    from charm_core.checkpoint import load_checkpoint

    trainer = make_trainer(small_dataset, tmp_path, "steps=2", "warmup_steps=0", f"init_from={random_checkpoint}")
    source, _ = load_checkpoint(random_checkpoint)
    own = trainer.model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in source.state_dict().items())
    assert f"init_from {random_checkpoint} (charm layout): loaded {len(own)} tensors" in capsys.readouterr().out


def test_charm_train_answers_a_missing_data_folder_in_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as done:
        train_main([f"data_root={tmp_path / 'no_such_data'}", f"out_dir={out}", *TINY, "steps=1", "warmup_steps=0"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "Traceback" not in err
    assert err.startswith("charm-train: error:") and err.count("\n") == 1
    assert not out.exists(), "a failed start left an empty run folder"


def test_charm_train_refuses_to_resume_another_model_in_one_line(small_dataset, tmp_path, capsys):
    common = [f"data_root={small_dataset}", f"out_dir={tmp_path}", *TINY, "steps=1", "warmup_steps=0", "eval_every=100",
              "checkpoint_every=1"]
    assert train_main(common) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        train_main([*common, "steps=2", "model.arch=mean"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1 and len(err) < 400
    assert "holds another model: arch 'charm' (recipe: 'mean')" in err and "--no-resume" in err
