"""The dual-path CHARM trainer (DESIGN.md §6).

Every step:
- CoL (collaborative): the fused path on the batch with a random non-empty modality subset per
  sample -> OHEM CE (plus the alignment term for the `align` baseline).
- InE (individual enhancement): one modality m*, drawn by SoftMin over a running strength estimate,
  runs alone through the same projector / RE / MPU / head -> OHEM CE; L = CE_CoL + lambda * CE_InE.
  With `ine_isolated` the InE gradient stops at the shared backbone (A).
Inference uses the CoL path only. Single process on CPU or GPU; several processes (GPUs, or CPU
ranks on gloo; one machine or several) through `torchrun`: DistributedDataParallel over both paths
in one forward (dual_path.DualPath), batches sharded by rank, m* identical on every rank, rank 0
alone validating, logging and writing checkpoints, and every rank stopping at the same step.
Resumable: weights + optimizer + sampler statistics; each step's randomness is a function of
(seed, step, rank), so a resumed run draws what an uninterrupted one would have.
"""
from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from charm_core.checkpoint import init_from_checkpoint, load_checkpoint, save_checkpoint
from charm_core.classes import IGNORE_INDEX
from charm_core.data.augment import AugmentConfig
from charm_core.data.base import ModalDataset
from charm_core.data.datasets import build_dataset
from charm_core.evaluation import evaluate_subsets
from charm_core.modalities import all_subsets
from charm_core.model import build_model, init_from
from charm_core.train import distributed
from charm_core.train.class_weights import class_pixels, sqrt_median_weights
from charm_core.train.config import TrainConfig
from charm_core.train.distributed import from_rank0, mean_over_ranks, step_seed
from charm_core.train.dual_path import DualPath
from charm_core.train.losses import OhemCrossEntropy
from charm_core.train.modality_sampling import SoftMinSampler, random_subset_masks
from charm_core.train.optim import build_optimizer, warmup_poly
from charm_core.train.plot import plot_metrics
from charm_core.train.state import load_training_state, save_training_state


class EpochIndexed(Dataset):
    """Items addressed by (epoch, index) so augmentation is a pure function of (seed, epoch, index),
    whatever the worker layout: a resumed run draws exactly the batches the original would have."""

    def __init__(self, dataset: ModalDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]


class StepBatches(Sampler):
    """Batch keys for steps [start, steps): a seeded permutation per epoch, sharded across ranks.

    What DistributedSampler + set_epoch do (a fresh permutation each epoch, disjoint shards per
    rank), addressed by step instead of by epoch, so a run resumed in the middle of an epoch
    continues with the very batches the interrupted one would have drawn next.
    """

    def __init__(self, n: int, batch_size: int, steps: int, seed: int, start: int = 0,
                 rank: int = 0, world: int = 1) -> None:
        if n < batch_size * world:
            raise ValueError(f"{n} training samples are fewer than one batch ({batch_size} x {world} ranks)")
        self.n, self.batch, self.steps, self.seed, self.start = n, batch_size, steps, seed, start
        self.rank, self.world = rank, world
        self.per_epoch = n // (batch_size * world)

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.steps):
            epoch, pos = divmod(step, self.per_epoch)
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100003 + epoch))
            first = (pos * self.world + self.rank) * self.batch
            yield [(epoch, int(i)) for i in perm[first:first + self.batch]]


def collate(items: list) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    inputs = {m: torch.stack([it[0][m] for it in items]) for m in items[0][0]}
    return inputs, torch.stack([it[1] for it in items])


@dataclass
class StepResult:
    loss: float
    col: float
    ine: float | None
    ine_modality: str | None
    aux: float | None


class Trainer:
    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.ranks, self.device = distributed.setup(cfg.device)
        self.rank, self.world, self.main = self.ranks.rank, self.ranks.world, self.ranks.main
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.out = Path(cfg.out_dir)
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)

        self.model_cfg = cfg.model_config()
        self.model = build_model(self.model_cfg).to(self.device)
        if cfg.init_from:
            report = init_from(self.model, cfg.init_from)
            if self.main:
                print(report.summary())
        if cfg.init_checkpoint:
            report = init_from_checkpoint(self.model, cfg.init_checkpoint)
            if self.main:
                print(f"init_checkpoint {cfg.init_checkpoint}: {len(report['loaded'])} tensors loaded, "
                      f"{len(report['rows'])} per-modality tensors row by row, {len(report['fresh'])} fresh "
                      f"(e.g. {report['fresh'][:3]}), {len(report['unused'])} unused")
        self.train_set = build_dataset(cfg.dataset, cfg.data_root, cfg.train_split, self.model_cfg.specs, cfg.size,
                                       augment=True, seed=cfg.seed,
                                       augment_config=AugmentConfig(scale=cfg.augment_scale))
        self.val_set: ModalDataset | None = None
        self.out.mkdir(parents=True, exist_ok=True)  # after the data loaded: a typo leaves no empty run folder
        self.optimizer = build_optimizer(self.model, cfg.lr, cfg.weight_decay, cfg.head_lr_mult)
        for group in self.optimizer.param_groups:
            group["initial_lr"] = group["lr"]
        self.lr_factor = warmup_poly(cfg.steps, cfg.warmup_steps, cfg.warmup_ratio, cfg.poly_power)
        weights = None
        if cfg.class_weights == "sqrt_median":
            pixels = class_pixels(cfg.data_root, lambda i: self.train_set.load_raw(i)[1], len(self.train_set))
            weights = sqrt_median_weights(pixels)
        self.loss_fn = OhemCrossEntropy(cfg.ohem_thresh, cfg.ohem_min_kept, class_weights=weights).to(self.device)
        self.sampler = SoftMinSampler(cfg.modalities, cfg.ine_temperature, cfg.ine_momentum,
                                      mode="uniform" if cfg.ine == "uniform" else "softmin")
        self.step = 0
        self.best = -math.inf
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.net: torch.nn.Module = DualPath(self.model)
        if self.world > 1:
            # Depthwise kernels [C, 1, k, k] get gradients whose stride differs from the weight's in
            # the size-1 dimension only (the same memory layout), which DDP reports as a mismatch.
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
            # find_unused_parameters: a modality no sample of this rank's batch has leaves its
            # projector out of the graph (the random subsets differ from rank to rank)
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)

    # ------------------------------------------------------------------ setup helpers
    def _amp_dtype(self) -> torch.dtype | None:
        amp = self.cfg.amp
        if amp == "off" or (amp == "auto" and self.device.type != "cuda"):
            return None
        if amp == "fp16":
            return torch.float16
        return torch.bfloat16

    def provenance(self) -> dict:
        return {"recipe": self.cfg.to_dict(), "step": self.step, "seed": self.cfg.seed,
                "input_size": list(self.cfg.eval_size), "data_root": str(self.cfg.data_root),
                "trainer": "charm_core.train (CoL + InE)", "best_val_mean_miou": self.best}

    def resume(self) -> bool:
        """Continue from out_dir/last.* if present; True if it did."""
        weights, state = self.out / "last.safetensors", self.out / "last.state.safetensors"
        if not (weights.is_file() and state.is_file()):
            return False
        model, info = load_checkpoint(weights, map_location=self.device)
        if info.config != self.model_cfg:
            saved, ours = info.config.to_dict(), self.model_cfg.to_dict()
            diff = ", ".join(f"{k} {saved[k]!r} (recipe: {ours[k]!r})" for k in saved if saved[k] != ours.get(k))
            raise ValueError(f"{weights} holds another model: {diff}; resume with its recipe, pick another out_dir, "
                             "or pass --no-resume to start over there")
        self.model.load_state_dict(model.state_dict())
        extra = load_training_state(state, self.optimizer)
        self.step, self.best = extra["step"], extra["best"]
        self.sampler.load_state_dict(extra["sampler"])
        if extra.get("scaler"):  # fp16 loss scale (empty when saved without fp16)
            self.scaler.load_state_dict(extra["scaler"])
        return True

    def save(self, name: str = "last") -> None:
        if not self.main:
            return
        save_checkpoint(self.out / f"{name}.safetensors", self.model, self.model_cfg,
                        class_names=self.train_set.CLASSES, palette=self.train_set.PALETTE,
                        provenance=self.provenance())
        if name == "last":
            save_training_state(self.out / "last.state.safetensors", self.optimizer,
                                {"step": self.step, "best": self.best, "sampler": self.sampler.state_dict(),
                                 "scaler": self.scaler.state_dict()})

    # ------------------------------------------------------------------ one step
    def train_step(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> StepResult:
        cfg = self.cfg
        self.net.train()
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * self.lr_factor(self.step)
        inputs = {m: x.to(self.device, non_blocking=True) for m, x in inputs.items()}
        labels = labels.to(self.device, non_blocking=True)
        torch.manual_seed(step_seed(cfg.seed, self.step, "torch", self.rank))
        subsets = torch.Generator().manual_seed(step_seed(cfg.seed, self.step, "subsets", self.rank))
        available = random_subset_masks(labels.shape[0], cfg.modalities, subsets, cfg.full_set_prob).to(self.device)
        modality = None
        if cfg.ine != "off":
            # one stream shared by all ranks and statistics all-reduced below, so every rank draws the
            # same m*; rank 0's draw is what all use, so the ranks cannot train different m* even if
            # their statistics ever drifted apart
            drawn = self.sampler.sample(torch.Generator().manual_seed(step_seed(cfg.seed, self.step, "ine")))
            modality = cfg.modalities[from_rank0(cfg.modalities.index(drawn), self.ranks, self.device)]
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            logits, aux, single = self.net(inputs, available, modality, cfg.ine_isolated)
            col = self.loss_fn(logits, labels)
            loss = col
            aux_loss = ine = None
            if self.model_cfg.arch == "align":
                aux_loss = aux["align_loss"]
                loss = loss + cfg.align_weight * aux_loss
            if single is not None:
                ine = self.loss_fn(single, labels)
                loss = loss + cfg.ine_lambda * ine
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if modality is not None:
            with torch.no_grad():
                labelled = labels != IGNORE_INDEX
                correct = (single.argmax(1) == labels) & labelled
                accuracy = mean_over_ranks(correct.sum().float() / labelled.sum().clamp(min=1), self.ranks)
            self.sampler.update(modality, float(accuracy))
        self.step += 1
        def value(t: torch.Tensor | None) -> float | None:
            return None if t is None else float(t.detach())

        return StepResult(value(loss), value(col), value(ine), modality, value(aux_loss))

    # ------------------------------------------------------------------ validation
    def validate(self) -> dict:
        cfg = self.cfg
        if self.val_set is None:
            self.val_set = build_dataset(cfg.dataset, cfg.data_root, cfg.val_split, self.model_cfg.specs,
                                         cfg.eval_size, eval_resize=cfg.eval_resize)
        val = self.val_set
        indices = range(len(val)) if cfg.val_max_samples is None else \
            range(0, len(val), max(1, len(val) // cfg.val_max_samples))
        report = evaluate_subsets(self.model, EvalBatches(val, list(indices), cfg.batch_size), val.CLASSES,
                                  all_subsets(cfg.modalities), "drop", self.device, self.amp_dtype, progress=False)
        summary = report.summary()
        return {"val_mean": summary["mean"][0], "val_top1": summary["top1"][0], "val_last1": summary["last1"][0],
                "val_full": report.results["+".join(cfg.modalities)].miou_present}

    # ------------------------------------------------------------------ loop
    def fit(self, resume: bool = True, stop_at: int | None = None) -> Path:
        """Train to cfg.steps (or only to `stop_at`, saving a resumable state there); returns best.safetensors."""
        cfg = self.cfg
        if resume and self.resume() and self.main:
            print(f"resumed from step {self.step}")
        if self.step >= cfg.steps:
            distributed.shutdown(self.ranks)
            return self.out / "best.safetensors"
        batches = StepBatches(len(self.train_set), cfg.batch_size, cfg.steps, cfg.seed, self.step,
                              self.rank, self.world)
        loader = DataLoader(EpochIndexed(self.train_set), batch_sampler=batches, collate_fn=collate,
                            num_workers=cfg.workers, pin_memory=self.device.type == "cuda",
                            persistent_workers=cfg.workers > 0,
                            # its own generator: creating the iterator must not draw from the global RNG
                            # (drop-path's), or a resumed run would diverge from an uninterrupted one
                            generator=torch.Generator().manual_seed(cfg.seed))
        log = None
        spent = 0.0  # training seconds before this run (a resumed run continues the clock and the budget)
        if self.main:
            spent = _truncate_log(self.out / "metrics.jsonl", self.step)
            log = (self.out / "metrics.jsonl").open("a")
            (self.out / "recipe.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        start = time.monotonic() - spent
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step", disable=not self.main,
                   dynamic_ncols=True)
        window: list[StepResult] = []
        for inputs, labels in loader:
            result = self.train_step(inputs, labels)
            window.append(result)
            bar.update(1)
            record = None
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                record = self._summarize(window, start)
                window = []
                bar.set_postfix_str(f"loss {record['loss']:.3f} InE p(" + " ".join(
                    f"{m[0]}={p:.2f}" for m, p in record["ine_modality_probs"].items()) + ")")
            if self.main and (self.step % cfg.eval_every == 0 or self.step == cfg.steps):
                metrics = self.validate()
                record = {**(record or {"step": self.step}), **metrics}
                if metrics["val_mean"] > self.best:
                    self.best = metrics["val_mean"]
                    self.save("best")
                tqdm.write(f"step {self.step}: val Mean {metrics['val_mean']:.1f} Top-1 {metrics['val_top1']:.1f} "
                           f"Last-1 {metrics['val_last1']:.1f} (best {self.best:.1f})")
            if record and log:
                log.write(json.dumps(record) + "\n")
                log.flush()
            out_of_time = False
            if cfg.time_limit_min is not None:  # rank 0's clock decides, so that all ranks stop together
                out_of_time = bool(from_rank0(int(time.monotonic() - start > cfg.time_limit_min * 60),
                                              self.ranks, self.device))
            stop = out_of_time or self.step == stop_at
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps or stop:
                self.save("last")
            if out_of_time and self.main:
                tqdm.write(f"time limit of {cfg.time_limit_min} min reached at step {self.step}; saved")
            if stop:
                break
        bar.close()
        if log:
            log.close()
        if self.main:
            plot_metrics(self.out / "metrics.jsonl", self.out / "metrics.png")
        distributed.shutdown(self.ranks)
        return self.out / "best.safetensors"

    def _summarize(self, window: list[StepResult], start: float) -> dict:
        def mean(values):
            values = [v for v in values if v is not None]
            return sum(values) / len(values) if values else None

        probs = self.sampler.probabilities().tolist()
        return {"step": self.step, "time_s": round(time.monotonic() - start, 1),
                "lr": self.optimizer.param_groups[0]["lr"], "loss": mean([r.loss for r in window]),
                "col": mean([r.col for r in window]), "ine": mean([r.ine for r in window]),
                "aux": mean([r.aux for r in window]),
                "ine_modality_probs": {m: round(p, 3) for m, p in zip(self.cfg.modalities, probs)}}


class EvalBatches:
    """(inputs, labels, conditions) batches of `indices`, the form evaluate_subsets takes; sized, so that
    its progress bar shows a total and an ETA."""

    def __init__(self, dataset: ModalDataset, indices: list[int], batch_size: int) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.dataset, self.indices, self.batch_size = dataset, list(indices), batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor, list[str]]]:
        for i in range(0, len(self.indices), self.batch_size):
            chunk = self.indices[i:i + self.batch_size]
            yield (*collate([self.dataset[j] for j in chunk]), [self.dataset.samples[j].condition for j in chunk])


def _truncate_log(path: Path, step: int) -> float:
    """Drop log rows past `step` (written after the checkpoint an interrupted run resumes from);
    returns the training time logged up to `step` (0 for a fresh run)."""
    if not path.exists():
        return 0.0
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    kept = [r for r in rows if r["step"] <= step]
    if len(kept) != len(rows):
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return float(kept[-1]["time_s"]) if kept and step > 0 else 0.0
