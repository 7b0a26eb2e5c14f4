"""CHARM vs mean fusion: parameters, GFLOPs and median latency for every modality-subset size.

    python bench/model_latency.py                  # CPU: tiny and b0 at 256 and 512 (< 5 min, 2 cores)
    python bench/model_latency.py --device cuda    # the same on a GPU (add --precision fp16/bf16)

Batch 1, eval mode, inference_mode, channels_last on CPU, the process set up as the Predictor sets it
up (glibc keeps freed memory; --no-malloc-tuning measures without). Subsets are the first k of the
model's modalities: cost depends only on how many are present. Every repetition runs each
arch and subset size once (interleaved), so load drift on a shared machine hits all cells alike;
latency is the median. GFLOPs = 2 x multiply-accumulates of matmuls, convolutions and attention
(torch.utils.flop_counter), counted on one forward.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from charm_core.malloc_tuning import retain_freed_memory
from charm_core.model import ModelConfig, build_model

ARCHS = ("mean", "charm")
_DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class Cell:
    backbone: str
    size: int
    arch: str
    params: int
    k: int
    gflops: float
    ms: float


def _cpu_sdpa_flops(q: tuple, k: tuple, v: tuple, *args, out_shape=None, **kwargs) -> int:
    """The CPU flash-attention kernel is not in torch's FLOP registry: QK^T and AV, 2 FLOPs per MAC."""
    b, h, lq, d = q
    return 2 * b * h * lq * k[2] * (d + v[3])


def count_gflops(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> float:
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        model(inputs)
    return counter.get_total_flops() / 1e9


def measure(backbone: str, size: int, device: torch.device, precision: str, warmup: int,
            reps: int) -> list[Cell]:
    """All cells of one backbone and input size, timed interleaved."""
    models = {}
    for arch in ARCHS:
        model = build_model(ModelConfig(arch=arch, backbone=backbone)).eval().to(device)
        if device.type == "cpu":
            model = model.to(memory_format=torch.channels_last)
        models[arch] = model
    inputs = {}
    modalities = models["charm"].cfg.modalities
    for k in range(1, len(modalities) + 1):
        x = torch.randn(1, 3, size, size, device=device)
        if device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        inputs[k] = {m: x.clone() for m in modalities[:k]}
    gflops = {(a, k): count_gflops(models[a], inputs[k]) for a in ARCHS for k in inputs}
    times: dict[tuple[str, int], list[float]] = {key: [] for key in gflops}
    autocast = torch.autocast(device.type, dtype=_DTYPES[precision], enabled=precision != "fp32")
    with torch.inference_mode(), autocast:
        for rep in range(warmup + reps):
            for arch, k in times:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                models[arch](inputs[k])
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if rep >= warmup:
                    times[(arch, k)].append((time.perf_counter() - start) * 1000.0)
    params = {a: sum(p.numel() for p in m.parameters()) for a, m in models.items()}
    return [Cell(backbone, size, a, params[a], k, gflops[(a, k)], statistics.median(times[(a, k)]))
            for a, k in times]


def markdown(cells: list[Cell]) -> str:
    lines = ["| backbone | input | arch | params (M) | modalities | GFLOPs | median ms |",
             "|---|---|---|---:|---:|---:|---:|"]
    for c in cells:
        lines.append(f"| {c.backbone} | {c.size}x{c.size} | {c.arch} | {c.params / 1e6:.2f} | {c.k} | "
                     f"{c.gflops:.2f} | {c.ms:.1f} |")
    return "\n".join(lines)


def ratios(cells: list[Cell]) -> str:
    by = {(c.backbone, c.size, c.arch, c.k): c for c in cells}
    lines = ["| backbone | input | CHARM/mean latency (4 mod) | CHARM/mean GFLOPs (4 mod) | "
             "1-mod/4-mod latency, mean | 1-mod/4-mod latency, CHARM |",
             "|---|---|---:|---:|---:|---:|"]
    for backbone, size in dict.fromkeys((c.backbone, c.size) for c in cells):
        def cell(arch: str, k: int) -> Cell:
            return by[(backbone, size, arch, k)]
        lines.append(
            f"| {backbone} | {size}x{size} | {cell('charm', 4).ms / cell('mean', 4).ms:.2f} | "
            f"{cell('charm', 4).gflops / cell('mean', 4).gflops:.2f} | "
            f"{cell('mean', 1).ms / cell('mean', 4).ms:.2f} | {cell('charm', 1).ms / cell('charm', 4).ms:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--precision", choices=tuple(_DTYPES), default="fp32")
    parser.add_argument("--backbones", nargs="+", default=["tiny", "b0"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions (default: 9 CPU, 30 CUDA)")
    parser.add_argument("--no-malloc-tuning", action="store_true", help="leave glibc's malloc defaults")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")
    if device.type == "cpu" and args.precision == "fp16":
        parser.error("fp16 needs CUDA")
    tuned = device.type == "cpu" and not args.no_malloc_tuning and retain_freed_memory()
    reps = args.reps or (9 if device.type == "cpu" else 30)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# model latency: {name}, torch {torch.__version__}, {args.precision}, batch 1, "
          f"median of {reps} (warm-up {args.warmup}), malloc tuning {'on' if tuned else 'off'}\n")
    cells = []
    start = time.perf_counter()
    load_before = os.getloadavg()[0]  # other processes skew CPU numbers: say how busy the machine was
    for backbone in args.backbones:
        for size in args.sizes:
            cells += measure(backbone, size, device, args.precision, args.warmup, reps)
    print(markdown(cells))
    print()
    print(ratios(cells))
    print(f"\n(total bench time {time.perf_counter() - start:.0f} s; load average before/after: "
          f"{load_before:.2f} / {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
