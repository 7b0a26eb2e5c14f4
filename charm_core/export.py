"""`charm-export`: a checkpoint's modality subsets as static-shape ONNX graphs, checked against torch.

Writes OUT/<subset>.onnx per subset (all 2^N - 1 by default) at the checkpoint's input size or
--size; each graph's metadata_props carry the checkpoint's SHA-256, subset, size, opset and exporter.
Every graph is run in ONNX Runtime on export and compared with torch; a difference over
--tolerance stops the export (exit 1) naming the subset.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from charm_core.checkpoint import load_checkpoint
from charm_core.modalities import all_subsets
from charm_core.runtimes.cache import atomic_write, file_sha256
from charm_core.runtimes.graph import DEFAULT_TOLERANCE, OPSET, ExportError, GraphSpec, export_graph, parse_subset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="charm-export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a charm_ros .safetensors checkpoint")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", help="folder for <subset>.onnx (created)")
    target.add_argument("--prepare", choices=("onnxruntime", "tensorrt", "auto"),
                        help="instead: build the graphs (or engines) of this backend into the runtime cache the "
                             "node and charm-bag-eval load them from ($CHARM_CACHE_DIR or ~/.cache/charm_ros), so "
                             "a first start does not export while it runs")
    parser.add_argument("--subsets", nargs="+", metavar="SUBSET",
                        help="e.g. rgb rgb+lidar (default: every non-empty subset of the model's modalities)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                        help="input size fixed in the graphs (default: the checkpoint's input size)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="largest |logit difference| ONNX Runtime vs torch accepted (default %(default)g)")
    args = parser.parse_args(argv)
    try:
        model, info = load_checkpoint(args.checkpoint)
        subsets = ([parse_subset(s, info.modalities) for s in args.subsets] if args.subsets
                   else all_subsets(info.modalities))
    except ValueError as exc:
        parser.error(str(exc))
    size = tuple(args.size or info.provenance.get("input_size") or ())
    if len(size) != 2 or min(size) < 1:
        parser.error("give --size H W (the checkpoint records no input size)" if not size else
                     f"--size {size}: expected two positive integers")
    if args.prepare:
        from charm_core.inference import Predictor

        predictor = Predictor.from_checkpoint(args.checkpoint, device="auto", backend=args.prepare)
        predictor.prepare(subsets, (int(size[0]), int(size[1])), progress=True)
        status = predictor.status()
        print(f"{args.checkpoint}: {len(status['ready'])} {predictor.backend} graphs ready in the runtime cache")
        return 0
    digest = file_sha256(args.checkpoint)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, error = [], None
    with tqdm(list(dict.fromkeys(subsets)), desc="charm-export", unit="graph") as bar:
        for subset in bar:
            spec = GraphSpec(digest, subset, (int(size[0]), int(size[1])))
            try:
                exported = export_graph(model, spec, args.tolerance)
            except ExportError as exc:
                error = exc
                break
            atomic_write(out / f"{spec.name}.onnx", exported.data)
            rows.append(f"| {spec.name} | {exported.max_abs_diff:.2g} | {exported.seconds:.1f} | "
                        f"{len(exported.data) / 2 ** 20:.1f} |")
    if error is not None:
        print(f"charm-export: {error}", file=sys.stderr)
        return 1
    print(f"{args.checkpoint} (sha256 {digest[:12]}...) -> {out}: {len(rows)} graphs, {size[0]}x{size[1]}, "
          f"opset {OPSET}, torch {torch.__version__}\n")
    print("| subset | max \\|logit diff\\| vs torch | export s | MB |\n|---|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
