"""`charm-synth`: generate a DELIVER-layout synthetic dataset, or a preview contact sheet.

    charm-synth --out DIR --train N --val M --test K --size 256 256 --seed S [--workers 2] [--stats]
                [--modalities rgb,depth,event,lidar,thermal]
    charm-synth --preview out.png [--seed S --size 256 256]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2

from charm_core.classes import DELIVER_CLASSES
from charm_core.cli_help import HelpFormatter
from charm_core.data.synthetic.export import RENDERABLE, check_modalities, write_dataset
from charm_core.data.synthetic.preview import contact_sheet
from charm_core.modalities import DELIVER_MODALITIES


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="charm-synth", description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--out", type=Path, help="dataset root to write (DELIVER layout + meta.json)")
    p.add_argument("--train", type=int, default=0, help="number of training frames")
    p.add_argument("--val", type=int, default=0, help="number of validation frames")
    p.add_argument("--test", type=int, default=0, help="number of test frames")
    p.add_argument("--size", type=int, nargs="+", default=[256, 256], metavar=("H", "W"),
                   help="image height and width in pixels (one value: square)")
    p.add_argument("--seed", type=int, default=0, help="world seed (same seed -> byte-identical files)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="parallel processes")
    p.add_argument("--modalities", default=",".join(DELIVER_MODALITIES),
                   help=f"comma-separated sensors to write, of {','.join(RENDERABLE)}")
    p.add_argument("--stats", action="store_true", help="print the class histogram of the generated set")
    p.add_argument("--preview", type=Path, help="write a contact sheet (conditions x modalities) to this PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def format_histogram(class_pixels: dict[str, int]) -> str:
    """Markdown table of class pixel shares, largest first."""
    total = max(1, sum(class_pixels.values()))
    lines = ["| class | pixels | share |", "|---|---:|---:|"]
    for name, n in sorted(class_pixels.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {n} | {100.0 * n / total:.2f}% |")
    frequent = sum(1 for k, n in class_pixels.items() if k in DELIVER_CLASSES and n / total >= 0.005)
    lines.append(f"\n{frequent} of {len(DELIVER_CLASSES)} classes cover >= 0.5% of the pixels")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if args.out is None and args.preview is None:
        p.error("give --out DIR (with --train/--val/--test counts) and/or --preview PNG")
    if len(args.size) > 2 or not all(32 <= v <= 2048 for v in args.size):
        p.error(f"--size takes H W (or one value for a square) in 32..2048, got {args.size}")
    size = (args.size[0], args.size[-1])
    if args.seed < 0 or args.workers < 1 or min(args.train, args.val, args.test) < 0:
        p.error("--seed and the split counts must be >= 0 and --workers >= 1")
    try:
        modalities = check_modalities(tuple(m.strip() for m in args.modalities.split(",") if m.strip()))
    except ValueError as exc:
        p.error(f"--modalities: {exc}")
    if args.preview is not None:
        sheet = contact_sheet(seed=args.seed, size=size[0])
        args.preview.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.preview), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(f"wrote {args.preview}")
    if args.out is not None:
        counts = {"train": args.train, "val": args.val, "test": args.test}
        if sum(counts.values()) == 0:
            p.error("--out needs at least one of --train/--val/--test > 0")
        start = time.perf_counter()
        meta = write_dataset(args.out, counts, size, args.seed, workers=args.workers,
                             progress=not args.no_progress, modalities=modalities)
        n = sum(counts.values())
        print(f"wrote {n} frames to {args.out} in {time.perf_counter() - start:.1f} s")
        if args.stats:
            print(format_histogram(meta["class_pixels"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
