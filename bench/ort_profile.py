"""Where ONNX Runtime's time goes in one subset graph: kernel time per operator type, the speed of
the matmul-type kernels, and both against the FLOP floor of `model_latency.py`.

    python bench/ort_profile.py                                  # tiny CHARM, four modalities, 256x256
    python bench/ort_profile.py --modalities 1 --size 512 --backbone b0

The graph is the one the Predictor runs (exported and cut by the runtime module, the node's session
options). The run time is the median of unprofiled runs; the breakdown comes from a second,
profiled session (ONNX Runtime's per-node kernel times, median per node), whose per-node timing
overhead inflates the many small kernels more than the few large ones. Matmul-type kernels are
Gemm, MatMul, FusedMatMul and Conv; their FLOPs are computed from the shapes ONNX Runtime ran
(channel padding of its blocked convolution layout included). The model is a seeded random
initialisation, as in model_latency.py (latency does not depend on the weights).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from model_latency import count_gflops, matmul_gflops

from charm_core.modalities import MODALITIES
from charm_core.model import ModelConfig, build_model
from charm_core.runtimes.graph import GraphSpec, export_graph, runtime_graph
from charm_core.runtimes.ort_session import CPU_EP, session_options

MATMUL_OPS = ("Gemm", "MatMul", "FusedMatMul", "Conv")


def kernel_flops(op: str, inputs: list[list[int]], outputs: list[list[int]]) -> int:
    """FLOPs (2 per multiply-accumulate) of a matmul-type node from its input and output shapes."""
    out = math.prod(outputs[0])
    if op == "Conv":  # weight [C_out, C_in / groups, kh, kw]
        return 2 * out * math.prod(inputs[1][1:])
    # A holds M x K per batch and the output M x N per batch (A transposed or not; A is not broadcast
    # over the batch in CHARM's graphs): K = |A| N / |out|
    return 2 * out * (math.prod(inputs[0]) * outputs[0][-1] // out)


def node_times(profile: list[dict], skip_runs: int) -> dict[str, tuple[str, float, int]]:
    """Per node of a profile: (op type, median kernel µs over the runs after `skip_runs`, FLOPs)."""
    times: dict[str, list[float]] = defaultdict(list)
    meta: dict[str, tuple[str, int]] = {}
    for event in profile:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        name, args = event["name"], event["args"]
        times[name].append(event["dur"])
        if name not in meta:
            shapes = [[list(s.values())[0] for s in args.get(k, [])] for k in ("input_type_shape", "output_type_shape")]
            op = args["op_name"]
            meta[name] = (op, kernel_flops(op, *shapes) if op in MATMUL_OPS else 0)
    return {n: (meta[n][0], statistics.median(t[skip_runs:] or t), meta[n][1]) for n, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--arch", default="charm", choices=("charm", "mean"))
    parser.add_argument("--modalities", type=int, default=len(MODALITIES),
                        help=f"the first K of {list(MODALITIES)} (default: all)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    if not 1 <= args.modalities <= len(MODALITIES):
        parser.error(f"--modalities must be in 1..{len(MODALITIES)}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=args.arch, backbone=args.backbone)).eval()
    subset = tuple(MODALITIES[:args.modalities])
    rng = np.random.default_rng(0)
    feeds = {m: rng.standard_normal((1, 3, args.size, args.size)).astype(np.float32) for m in subset}
    gflops = count_gflops(model, {m: torch.from_numpy(a) for m, a in feeds.items()})
    print(f"exporting {'+'.join(subset)} at {args.size}x{args.size} ...", flush=True)
    graph = runtime_graph(export_graph(model, GraphSpec("bench", subset, (args.size, args.size))).data)

    session = ort.InferenceSession(graph, session_options(args.threads), providers=[CPU_EP])
    wall = []
    for i in range(args.warmup + args.runs):
        start = time.perf_counter()
        session.run(None, feeds)
        if i >= args.warmup:
            wall.append((time.perf_counter() - start) * 1e3)
    run_ms, matmul = statistics.median(wall), matmul_gflops(torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        options = session_options(args.threads)
        options.enable_profiling, options.profile_file_prefix = True, str(Path(tmp) / "ort")
        profiled = ort.InferenceSession(graph, options, providers=[CPU_EP])
        for _ in range(args.warmup + args.runs):
            profiled.run(None, feeds)
        nodes = node_times(json.loads(Path(profiled.end_profiling()).read_text()), args.warmup)

    floor = gflops / matmul * 1e3
    by_op: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # nodes, µs, FLOPs
    for op, us, flops in nodes.values():
        row = by_op[op]
        row[0] += 1
        row[1] += us
        row[2] += flops
    total = sum(r[1] for r in by_op.values())
    mm_us = sum(r[1] for op, r in by_op.items() if op in MATMUL_OPS)
    mm_flops = sum(r[2] for r in by_op.values())
    print(f"\n# ONNX Runtime {ort.__version__}, CPU, {args.threads} threads: {args.backbone} {args.arch}, "
          f"{'+'.join(subset)}, {args.size}x{args.size}\n")
    print(f"run (unprofiled, median of {args.runs}): {run_ms:.1f} ms; model {gflops:.2f} GFLOPs; "
          f"2048x2048 matmul {matmul:.0f} GFLOP/s -> floor {floor:.1f} ms; run / floor {run_ms / floor:.2f}\n")
    print("| op type | nodes | kernel ms | share | GFLOPs | GFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for op, (count, us, flops) in sorted(by_op.items(), key=lambda kv: -kv[1][1]):
        work, speed = (f"{flops / 1e9:.3f}", f"{flops / us / 1e3:.0f}") if flops else ("", "")
        print(f"| {op} | {count} | {us / 1e3:.2f} | {us / total:.1%} | {work} | {speed} |")
    share = mm_us / total
    print(f"\nprofiled kernel time {total / 1e3:.1f} ms: matmul-type {mm_us / 1e3:.1f} ms ({share:.0%}) at "
          f"{mm_flops / mm_us / 1e3:.0f} GFLOP/s ({mm_flops / mm_us / 1e3 / matmul:.0%} of the matmul's), "
          f"all other kernels {(total - mm_us) / 1e3:.1f} ms")
    print(f"at those shares of the unprofiled run: matmul-type {share * run_ms:.1f} ms = "
          f"{share * run_ms / floor:.2f} x floor, the rest {(1 - share) * run_ms:.1f} ms = "
          f"{(1 - share) * run_ms / floor:.2f} x floor")


if __name__ == "__main__":
    main()
