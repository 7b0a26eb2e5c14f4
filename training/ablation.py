"""The paper's claim under one recipe and an equal budget: CHARM vs its baselines and ablations.

Trains every variant with the same recipe, data, seed and number of steps, then evaluates each on a
held-out set (all 15 subsets, drop protocol) and writes a markdown table and a JSON of the results:

    python training/ablation.py --recipe training/synthetic_tiny.yaml --data data/synth \
        --heldout data/synth_val_s1000 --out runs/ablation [--parallel 5] [key=value ...]

Variants: charm (CoL + InE with SoftMin), mean fusion, align (mean + alignment loss), CHARM without
InE, CHARM with uniform InE sampling. `--parallel N` trains N variants at once (one GPU has room).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "charm": ["model.arch=charm", "ine=softmin"],
    "mean": ["model.arch=mean", "ine=off"],
    "align": ["model.arch=align", "ine=off"],
    "charm_no_ine": ["model.arch=charm", "ine=off"],
    "charm_uniform_ine": ["model.arch=charm", "ine=uniform"],
}


def train_command(recipe: str, data: str, out: Path, variant: str, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "charm_core.train.cli", "--config", recipe, "--no-resume",
            f"data_root={data}", f"out_dir={out / variant}", "time_limit_min=null", *VARIANTS[variant], *overrides]


def eval_command(out: Path, variant: str, heldout: str, device: str) -> list[str]:
    run = out / variant
    return [sys.executable, "-c", "import sys; from charm_core.train.cli import eval_main; sys.exit(eval_main())",
            "--checkpoint", str(run / "last.safetensors"), "--data", heldout, "--split", "val",
            "--device", device, "--json", str(run / "heldout.json"), "--details", str(run / "heldout_details.json")]


def run_all(commands: dict[str, list[str]], parallel: int, logs: Path) -> dict[str, float]:
    """Run the commands, `parallel` at a time; returns wall seconds per variant; raises on failure."""
    pending = list(commands.items())
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    seconds: dict[str, float] = {}
    while pending or running:
        while pending and len(running) < parallel:
            name, cmd = pending.pop(0)
            log = (logs / f"{name}.log").open("w")
            running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), time.monotonic())
        for name, (proc, start) in list(running.items()):
            if proc.poll() is not None:
                del running[name]
                if proc.returncode != 0:
                    raise RuntimeError(f"{name} failed ({proc.returncode}); see {logs / (name + '.log')}")
                seconds[name] = time.monotonic() - start
        time.sleep(1.0)
    return seconds


def table(results: dict[str, dict], seconds: dict[str, float]) -> str:
    subsets = [k for k in next(iter(results.values())) if k not in ("mean", "top1", "last1")]
    head = "| variant | Mean | Top-1 | Last-1 | train wall (s) |"
    lines = [head, "|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['mean']:.1f} | {r['top1']:.1f} | {r['last1']:.1f} | {seconds.get(name, 0):.0f} |")
    lines += ["", "| subset | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    for s in subsets:
        lines.append(f"| {s} | " + " | ".join(f"{results[v][s]:.1f}" for v in results) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="training/synthetic_tiny.yaml")
    parser.add_argument("--data", required=True, help="training data (DELIVER layout)")
    parser.add_argument("--heldout", required=True, help="held-out evaluation data (its val split)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--device", default="auto", help="for the evaluation")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="recipe overrides, the same for every variant")
    args = parser.parse_intermixed_args()  # key=value overrides before or after options
    args.out.mkdir(parents=True, exist_ok=True)
    trains = {v: train_command(args.recipe, args.data, args.out, v, args.overrides) for v in args.variants}
    seconds = run_all(trains, args.parallel, args.out)
    run_all({v: eval_command(args.out, v, args.heldout, args.device) for v in args.variants}, args.parallel, args.out)
    results = {v: json.loads((args.out / v / "heldout.json").read_text()) for v in args.variants}
    (args.out / "ablation.json").write_text(json.dumps({"results": results, "train_seconds": seconds,
                                                        "overrides": args.overrides}, indent=2))
    text = table(results, seconds)
    (args.out / "ablation.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
