"""CHARM vs mean fusion per runtime backend: GFLOPs, median latency, ratios and the FLOP floor.

    python bench/model_latency.py                               # CPU: torch vs onnxruntime, tiny and b0 at 256 and 512
    python bench/model_latency.py --backbones tiny --sizes 256  # the quick look
    python bench/model_latency.py --device cuda --precision fp16 --backends torch tensorrt

Batch 1 through the Predictor (what the node runs): latency is its `last_forward_ms`, the runtime's
own time including argmax and confidence. Subsets are the first k modalities in canonical order:
cost depends only on how many are present. Each backend runs in its own process (so one runtime's
thread pools and allocator do not tax the other), in rounds that alternate the backends' order;
inside a process every repetition runs each arch and subset size once (interleaved), so load drift
on a shared machine hits all cells alike; latency is the median over all rounds. Models are seeded
random initialisations (latency does not depend on the weights); graphs are exported once into
--cache and reused by later rounds.

GFLOPs = 2 x multiply-accumulates of matmuls, convolutions and attention (torch.utils.flop_counter)
on one forward. The FLOP floor of a cell is its GFLOPs over the GFLOP/s a 2048x2048 fp32 matmul
reaches with the same threads, measured in each round of the same run (best round): what the model
would take if every FLOP ran at matmul speed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from charm_core.checkpoint import CheckpointInfo
from charm_core.classes import DELIVER_CLASSES, DELIVER_PALETTE
from charm_core.inference import Predictor
from charm_core.modalities import MODALITIES
from charm_core.model import ModelConfig, build_model

ARCHS = ("mean", "charm")
PRECISIONS = ("fp32", "fp16", "bf16")


@dataclass
class Cell:
    backbone: str
    size: int
    arch: str
    k: int
    params: int = 0
    gflops: float = 0.0
    times: dict[str, list[float]] = field(default_factory=dict)  # backend -> ms of every timed run

    def ms(self, backend: str) -> float:
        return statistics.median(self.times[backend])


def _cpu_sdpa_flops(q: tuple, k: tuple, v: tuple, *args, out_shape=None, **kwargs) -> int:
    """The CPU flash-attention kernel is not in torch's FLOP registry: QK^T and AV, 2 FLOPs per MAC."""
    b, h, lq, d = q
    return 2 * b * h * lq * k[2] * (d + v[3])


def count_gflops(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> float:
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        model(inputs)
    return counter.get_total_flops() / 1e9


def matmul_gflops(device: torch.device, n: int = 2048, reps: int = 10) -> float:
    """GFLOP/s of an n x n fp32 matmul (best of `reps`), this process's threads."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(reps + 2):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


# ---------------------------------------------------------------------------------------- worker
def measure(backend: str, backbone: str, size: int, device: torch.device, precision: str, warmup: int,
            reps: int, cache: Path, count: bool) -> list[Cell]:
    """All cells of one backbone and input size on one backend, timed interleaved."""
    predictors, cells = {}, {}
    frames = {k: {m: np.random.default_rng(k).standard_normal((3, size, size)).astype(np.float32)
                  for m in MODALITIES[:k]} for k in range(1, len(MODALITIES) + 1)}
    for arch in ARCHS:
        torch.manual_seed(0)  # the same weights in every process: the graph cache serves later rounds
        config = ModelConfig(arch=arch, backbone=backbone)
        model = build_model(config).eval()
        info = CheckpointInfo(Path(f"bench-{arch}-{backbone}"), config, DELIVER_CLASSES, DELIVER_PALETTE,
                              config.modalities)
        params = sum(p.numel() for p in model.parameters())
        for k, frame in frames.items():
            gflops = count_gflops(model, {m: torch.from_numpy(a)[None] for m, a in frame.items()}) if count else 0.0
            cells[(arch, k)] = Cell(backbone, size, arch, k, params, gflops, {backend: []})
        predictor = Predictor(model, info, device, precision, backend, cache_dir=cache, threads=torch.get_num_threads())
        predictor.prepare([MODALITIES[:k] for k in frames], (size, size), progress=True)
        predictors[arch] = predictor
    for rep in range(warmup + reps):
        for (arch, k), cell in cells.items():
            predictors[arch].predict(frames[k])
            if predictors[arch].last_backend != backend:
                raise RuntimeError(f"{arch} k={k} was served by {predictors[arch].last_backend}, not {backend}")
            if rep >= warmup:
                cell.times[backend].append(predictors[arch].last_forward_ms)
    return list(cells.values())


def worker(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cells = []
    for backbone in args.backbones:
        for size in args.sizes:
            cells += measure(args.worker, backbone, size, device, args.precision, args.warmup, args.reps,
                             Path(args.cache), args.count_flops)
    print(json.dumps({"cells": [asdict(c) for c in cells], "matmul_gflops": matmul_gflops(device)}))


# ---------------------------------------------------------------------------------------- report
def cell_table(cells: list[Cell], backends: list[str], floor_gflops: float) -> str:
    first = backends[0]
    head = ["backbone", "input", "arch", "params (M)", "modalities", "GFLOPs", "floor ms"]
    head += [f"{b} ms" for b in backends] + [f"{b}/{first}" for b in backends[1:]] + [f"{b}/floor" for b in backends]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---|" + "---:|" * (len(head) - 3)]
    for c in cells:
        floor = c.gflops / floor_gflops * 1000.0
        row = [c.backbone, f"{c.size}x{c.size}", c.arch, f"{c.params / 1e6:.2f}", str(c.k), f"{c.gflops:.2f}",
               f"{floor:.1f}"]
        row += [f"{c.ms(b):.1f}" for b in backends] + [f"{c.ms(b) / c.ms(first):.2f}" for b in backends[1:]]
        row += [f"{c.ms(b) / floor:.1f}" for b in backends]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def ratio_table(cells: list[Cell], backends: list[str]) -> str:
    by = {(c.backbone, c.size, c.arch, c.k): c for c in cells}
    k_max = max(c.k for c in cells)
    lines = [f"| backbone | input | backend | CHARM/mean latency ({k_max} mod) | CHARM/mean GFLOPs ({k_max} mod) | "
             f"1-mod/{k_max}-mod latency, mean | 1-mod/{k_max}-mod latency, CHARM |",
             "|---|---|---|---:|---:|---:|---:|"]
    for backbone, size in dict.fromkeys((c.backbone, c.size) for c in cells):
        def cell(arch: str, k: int) -> Cell:
            return by[(backbone, size, arch, k)]
        for b in backends:
            lines.append(
                f"| {backbone} | {size}x{size} | {b} | {cell('charm', k_max).ms(b) / cell('mean', k_max).ms(b):.2f} | "
                f"{cell('charm', k_max).gflops / cell('mean', k_max).gflops:.2f} | "
                f"{cell('mean', 1).ms(b) / cell('mean', k_max).ms(b):.2f} | "
                f"{cell('charm', 1).ms(b) / cell('charm', k_max).ms(b):.2f} |")
    return "\n".join(lines)


def run_worker(backend: str, args: argparse.Namespace, cache: Path, count: bool) -> dict:
    cmd = [sys.executable, __file__, "--worker", backend, "--device", args.device, "--precision", args.precision,
           "--backbones", *args.backbones, "--sizes", *map(str, args.sizes), "--warmup", str(args.warmup),
           "--reps", str(args.reps), "--threads", str(args.threads), "--cache", str(cache)]
    # Passive OpenMP waiting, as the node runs (charm_ros.env) and as ONNX Runtime runs without spinning.
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    out = subprocess.run(cmd + (["--count-flops"] if count else []), stdout=subprocess.PIPE, check=True, text=True,
                         env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--backends", nargs="+", default=None,
                        help="first is the reference of the ratios (default: torch onnxruntime on CPU, "
                             "torch tensorrt on CUDA)")
    parser.add_argument("--backbones", nargs="+", default=["tiny", "b0"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--rounds", type=int, default=3, help="processes per backend, alternating (default 3)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per round (default: 5 CPU, 30 CUDA)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="intra-op threads of every runtime (default: %(default)s)")
    parser.add_argument("--cache", help="graph cache (default: a temporary folder, removed at the end)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--count-flops", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")
    args.reps = args.reps or (5 if device.type == "cpu" else 30)
    if args.worker:
        worker(args)
        return
    backends = args.backends or (["torch", "onnxruntime"] if device.type == "cpu" else ["torch", "tensorrt"])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"# model latency: {name}, torch {torch.__version__}, {args.precision}, batch 1, {args.rounds} rounds "
          f"x median of {args.reps} (warm-up {args.warmup}) per backend, each backend in its own process\n")
    start, load_before = time.perf_counter(), os.getloadavg()[0]  # other processes skew CPU numbers
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache or tmp)
        cells: dict[tuple, Cell] = {}
        matmul = []
        for r in range(args.rounds):
            for backend in (backends if r % 2 == 0 else backends[::-1]):
                result = run_worker(backend, args, cache, count=not cells)
                matmul.append(result["matmul_gflops"])
                for c in map(lambda d: Cell(**d), result["cells"]):
                    merged = cells.setdefault((c.backbone, c.size, c.arch, c.k), c)
                    merged.gflops = merged.gflops or c.gflops
                    if merged is not c:
                        merged.times.setdefault(backend, []).extend(c.times[backend])
    floor = max(matmul)
    print(f"2048x2048 fp32 matmul: {floor:.0f} GFLOP/s (best of {len(matmul)} processes; median "
          f"{statistics.median(matmul):.0f})\n")
    print(cell_table(list(cells.values()), backends, floor))
    print()
    print(ratio_table(list(cells.values()), backends))
    print(f"\n(total bench time {time.perf_counter() - start:.0f} s; load average before/after: "
          f"{load_before:.2f} / {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
