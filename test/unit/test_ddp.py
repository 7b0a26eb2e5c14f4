"""Distributed training: two CPU ranks on gloo run the full method (CoL + SoftMin InE) as torchrun would.

Each rank is a spawned process given torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT) and runs the Trainer; it writes its parameters and per-step results, which
the test compares across ranks.
"""
from __future__ import annotations

import json
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp

from charm_core.checkpoint import load_checkpoint

WORLD = 2
RECIPE = ["model.backbone=tiny", "modalities=[rgb, depth]", "size=[64, 64]", "batch_size=2", "workers=0",
          "threads=1", "device=cpu", "ine=softmin", "steps=8", "warmup_steps=1", "log_every=1",
          "eval_every=100", "checkpoint_every=100", "val_max_samples=1", "model.drop_path=0.1"]


@dataclass(frozen=True)
class Run:
    """One Trainer.fit on every rank: recipe overrides, where to stop, a rank whose clock stands still."""
    overrides: list[str]
    stop_at: int | None = None
    frozen_clock_rank: int | None = None


def _rank(rank: int, ports: list[int], runs: list[Run], out: str) -> None:
    """Each run with a fresh Trainer (and process group) in this process: a later run starts from what
    the earlier one left on disk, as a relaunched torchrun would (without paying torch's import again)."""
    import charm_core.train.trainer as trainer_module
    from charm_core.train.config import load_config

    monotonic = trainer_module.time
    for index, (run, port) in enumerate(zip(runs, ports)):
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(port))
        # the rank with a frozen clock would never see the time limit by itself
        trainer_module.time = SimpleNamespace(monotonic=lambda: 0.0) if rank == run.frozen_clock_rank else monotonic
        trainer = trainer_module.Trainer(load_config(None, run.overrides))
        steps, step = [], trainer.train_step

        def recorded(inputs, labels, trainer=trainer, steps=steps, step=step):
            first = trainer.step
            result = step(inputs, labels)
            steps.append({"step": first, "loss": result.loss, "col": result.col, "ine": result.ine,
                          "modality": result.ine_modality})
            return result

        trainer.train_step = recorded
        trainer.fit(resume=True, stop_at=run.stop_at)
        torch.save({n: p.detach().clone() for n, p in trainer.model.named_parameters()}, f"{out}/{index}.{rank}.pt")
        Path(f"{out}/{index}.{rank}.json").write_text(json.dumps({"steps": steps, "final": trainer.step}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(runs: list[Run], out: Path, timeout: float = 240.0) -> list[list[dict]]:
    """The runs on both ranks, to completion (a hang fails the test instead of blocking it); per run,
    the ranks' reports."""
    out.mkdir(parents=True, exist_ok=True)
    context = mp.start_processes(_rank, args=([_free_port() for _ in runs], runs, str(out)), nprocs=WORLD,
                                 join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    try:
        while not context.join(timeout=1.0):
            assert time.monotonic() < deadline, f"ranks still running after {timeout:.0f} s"
    finally:
        for proc in context.processes:
            if proc.is_alive():
                proc.kill()
    reports = []
    for index in range(len(runs)):
        reports.append([])
        for rank in range(WORLD):
            report = json.loads((out / f"{index}.{rank}.json").read_text())
            report["params"] = torch.load(out / f"{index}.{rank}.pt", weights_only=True)
            reports[-1].append(report)
    return reports


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [n for n in a if not torch.equal(a[n], b[n])]
    assert not different, f"{len(different)} parameters differ between ranks, e.g. {different[:3]}"


@pytest.mark.slow
def test_two_gloo_ranks_train_col_and_ine_in_step_and_resume(small_dataset, tmp_path):
    run = tmp_path / "run"
    recipe = [f"data_root={small_dataset}", f"out_dir={run}", *RECIPE]

    # First 5 of 8 steps, saved; then resumed under DDP, now with fp16 AMP (autocast + GradScaler) and a
    # time limit that only rank 0's clock sees: both ranks continue from the saved step and stop together
    # after one step (a rank that went on alone would hang in its all-reduce).
    first, second = run_ranks([Run(recipe, stop_at=5),
                               Run([*recipe, "amp=fp16", "time_limit_min=1e-6"], frozen_clock_rank=1)],
                         tmp_path / "ranks")
    for report in first:
        assert [s["step"] for s in report["steps"]] == [0, 1, 2, 3, 4] and report["final"] == 5
        assert all(math.isfinite(s[k]) for s in report["steps"] for k in ("loss", "col", "ine"))
    assert_same_weights(first[0]["params"], first[1]["params"])
    modalities = [[s["modality"] for s in r["steps"]] for r in first]
    assert modalities[0] == modalities[1]                                  # one m* per step for all ranks
    assert [s["col"] for s in first[0]["steps"]] != [s["col"] for s in first[1]["steps"]]  # different shards
    saved, _ = load_checkpoint(run / "last.safetensors")
    assert_same_weights(dict(saved.named_parameters()), second[0]["params"])   # rank 0 wrote the last step

    for report in second:
        assert [s["step"] for s in report["steps"]] == [5] and report["final"] == 6
        assert all(math.isfinite(s["loss"]) for s in report["steps"])
    assert_same_weights(second[0]["params"], second[1]["params"])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]


def test_step_batches_give_each_rank_a_disjoint_shard_of_every_epoch():
    from charm_core.train.trainer import StepBatches

    n, batch, steps = 11, 2, 6
    ranks = [list(StepBatches(n, batch, steps, seed=4, rank=r, world=2)) for r in range(2)]
    per_epoch = n // (batch * 2)                                      # 2 steps; 3 samples left out per epoch
    for epoch in range(steps // per_epoch):
        keys = [k for r in ranks for b in r[epoch * per_epoch:(epoch + 1) * per_epoch] for k in b]
        assert {e for e, _ in keys} == {epoch}
        assert len({i for _, i in keys}) == len(keys) == per_epoch * batch * 2   # no sample twice
    orders = [[i for b in ranks[0][e * per_epoch:(e + 1) * per_epoch] for _, i in b] for e in range(3)]
    assert orders[0] != orders[1] != orders[2]                           # a fresh permutation each epoch
    resumed = list(StepBatches(n, batch, steps, seed=4, start=3, rank=1, world=2))
    assert resumed == ranks[1][3:]                                       # resuming mid-epoch: the same batches


def test_step_seeds_are_reproducible_and_distinct_per_step_stream_and_rank():
    from charm_core.train.distributed import STREAMS, step_seed

    assert step_seed(0, 5, "ine") == step_seed(0, 5, "ine")
    seeds = {step_seed(s, t, k, r) for s in (0, 1) for t in (0, 1) for k in STREAMS for r in (None, 0, 1)}
    assert len(seeds) == 2 * 2 * len(STREAMS) * 3
