"""`charm-train` and `charm-eval` entry points."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from charm_core.checkpoint import load_checkpoint
from charm_core.cli_help import HelpFormatter
from charm_core.data.base import EVAL_RESIZES
from charm_core.data.datasets import DATASETS, build_dataset
from charm_core.data.deliver import SPLITS
from charm_core.evaluation import PROTOCOLS, evaluate_subsets
from charm_core.inference import PRECISIONS, Predictor, resolve_device
from charm_core.modalities import all_subsets
from charm_core.runtimes import BACKENDS
from charm_core.runtimes.graph import parse_subset
from charm_core.train.config import load_config
from charm_core.train.trainer import EvalBatches, Trainer


def train_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="charm-train", description="Dual-path (CoL + InE) CHARM training.",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--config", help="training recipe YAML (training/*.yaml)")
    parser.add_argument("--no-resume", action="store_true", help="start fresh even if out_dir has a last checkpoint")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                        help="training crop size (the recipe's `size`; same as the override size=[H,W])")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="override recipe entries, e.g. steps=200 model.arch=mean out_dir=runs/x")
    args = parser.parse_intermixed_args(argv)  # key=value overrides before or after options
    try:
        sizes = [f"size=[{args.size[0]}, {args.size[1]}]"] if args.size else []
        cfg = load_config(args.config, [*args.overrides, *sizes])
    except (OSError, ValueError, TypeError) as exc:
        parser.error(str(exc))
    try:  # user mistakes (a missing data folder, a run folder of another model) are one line, not a traceback
        trainer = Trainer(cfg)
        resumed = not args.no_resume and trainer.resume()
    except (OSError, ValueError) as exc:
        parser.exit(2, f"charm-train: error: {exc}\n")
    if resumed and trainer.main:
        print(f"resumed from step {trainer.step}")
    best = trainer.fit(resume=False)
    if trainer.main:
        print(f"best checkpoint: {best}")
    return 0


def plot_subsets(compact: dict[str, float], out_png: str | Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in compact if k not in ("mean", "top1", "last1")]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.3 * len(names) + 4.0), 4))
    ax.bar(range(len(names)), [compact[n] for n in names], color="#4c72b0")
    for key, style in (("mean", "-"), ("top1", "--"), ("last1", ":")):
        ax.axhline(compact[key], color="k", linestyle=style, linewidth=1, label=f"{key} {compact[key]:.1f}")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set(ylabel="mIoU (classes present)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def eval_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="charm-eval", formatter_class=HelpFormatter,
                                     description="MaSS evaluation: all 2^N - 1 subsets of the model's N modalities, "
                                                 "Mean / Top-1 / Last-1.")
    parser.add_argument("--checkpoint", required=True, help="checkpoint (safetensors) to evaluate")
    parser.add_argument("--data", required=True,
                        help="dataset root (DELIVER layout: real DELIVER or charm-synth output)")
    parser.add_argument("--dataset", choices=sorted(DATASETS),
                        help="dataset layout (default: the checkpoint's training recipe's, else deliver)")
    parser.add_argument("--split", default="val", choices=SPLITS, help="split to evaluate")
    parser.add_argument("--protocol", default="drop", choices=PROTOCOLS,
                        help="drop: absent modalities are not fed; zero: fed as zeros and marked available")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                        help="evaluation size (default: the checkpoint's training size)")
    parser.add_argument("--resize", choices=EVAL_RESIZES,
                        help="exact: to --size; deliver: DELIVER's protocol, short side to H rounded up to a "
                             "multiple of 32 (default: the checkpoint's recipe, else exact)")
    parser.add_argument("--batch-size", type=int, default=8, help="frames per forward")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    parser.add_argument("--backend", default="torch", choices=BACKENDS,
                        help="torch (the reference, batched), onnxruntime, tensorrt or auto; graph "
                             "backends export (or load from the cache) one graph per subset first")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS + ("int8",),
                        help="fp16/bf16 autocast on torch; int8 on onnxruntime (CPU)")
    parser.add_argument("--subsets", nargs="+", metavar="SUBSET",
                        help="evaluate only these subsets, e.g. rgb rgb+lidar (default: all)")
    parser.add_argument("--max-samples", type=int, default=None, help="evaluate an evenly spaced subset")
    parser.add_argument("--json", help="write {subset: mIoU, mean, top1, last1} (classes present) here")
    parser.add_argument("--details", help="write per-class, per-condition and both mIoU conventions here")
    parser.add_argument("--plot", help="bar chart PNG of the subsets")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
        if args.backend == "torch" and args.precision == "fp32":
            model, info = load_checkpoint(args.checkpoint, map_location=device)
        else:
            model = Predictor.from_checkpoint(args.checkpoint, device, args.precision, backend=args.backend)
            info = model.info
        size = tuple(args.size or info.provenance.get("input_size", (256, 256)))
        resize = args.resize or info.provenance.get("recipe", {}).get("eval_resize", "exact")
        dataset = args.dataset or info.provenance.get("recipe", {}).get("dataset", "deliver")
        subsets = ([parse_subset(s, info.modalities) for s in args.subsets] if args.subsets
                   else all_subsets(info.modalities))
        data = build_dataset(dataset, args.data, args.split, info.config.specs, size, eval_resize=resize)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    if isinstance(model, Predictor):
        try:
            # the zero protocol feeds every modality (zeros for the absent): one graph serves all
            model.prepare([info.modalities] if args.protocol == "zero" else subsets, size, progress=True)
        except RuntimeError as exc:
            print(f"charm-eval: {exc}", file=sys.stderr)
            return 1
    indices = list(range(len(data)))
    if args.max_samples:
        indices = indices[:: max(1, len(indices) // args.max_samples)][: args.max_samples]
    report = evaluate_subsets(model, EvalBatches(data, indices, args.batch_size), info.class_names,
                              subsets, args.protocol, device)
    shape = f"short side {size[0]}, DELIVER resize" if resize == "deliver" else f"{size[0]}x{size[1]}"
    print(f"{args.checkpoint} on {args.data} [{args.split}, {len(indices)} samples, protocol {args.protocol}, "
          f"{shape}, {args.backend} {args.precision}]\n")
    print(report.markdown())
    backends = sorted({b for counts in report.served_by.values() for b in counts})
    print(f"\nserved by: {', '.join(backends)}")
    compact = report.compact()
    if args.json:
        Path(args.json).write_text(json.dumps(compact, indent=2))
    if args.details:
        Path(args.details).write_text(json.dumps(report.details(), indent=2))
    if args.plot:
        plot_subsets(compact, args.plot, f"{Path(args.checkpoint).name} ({args.protocol})")
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
