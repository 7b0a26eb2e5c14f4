"""Sensor encoding time (uint8 network images + float network tensors) per modality, back-to-back vs
after the cores sat idle, as the node encodes every frame after waiting for the next one.

    .venv/bin/python bench/encoder_latency.py [--idle-ms 60] [--reps 40]

The node's `/diagnostics` encode_ms is the "after idle" figure: on a VM whose idle vCPUs halt, work
that follows an idle period runs slower than the same work back-to-back (cold caches, vCPU wake-up).
The process is set up as the node sets it up (glibc keeps freed memory). Synthetic frames at 256x256.
A second table encodes frames from cameras of other resolutions into the same 256x256 network input.
"""
from __future__ import annotations

import argparse
import statistics
import time

from charm_core.data.synthetic import World
from charm_core.encoders import FrameEncoder, SensorGeometry, frame_to_network
from charm_core.malloc_tuning import retain_freed_memory
from charm_core.modalities import MODALITIES


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle-ms", type=float, default=60.0, help="sleep before each 'after idle' encoding")
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--camera-sizes", type=_size, nargs="+", default=[(256, 256), (480, 640), (720, 1280)],
                        metavar="WxH", help="camera resolutions for the second table")
    args = parser.parse_args()
    retain_freed_memory()
    frames = list(World(seed=3, size_hw=(256, 256)).frames(8))
    encoder = FrameEncoder((256, 256), SensorGeometry())

    def encode_ms(subset: tuple[str, ...], frame, idle_s: float) -> float:
        arrays = {m: getattr(frame, m) for m in subset}
        time.sleep(idle_s)
        start = time.perf_counter()
        frame_to_network(encoder.encode(K=frame.K, image_hw=frame.rgb.shape[:2], **arrays))
        return (time.perf_counter() - start) * 1e3

    print("| sensors | back-to-back ms | after idle ms | ratio |\n|---|---|---|---|")
    for subset in [(m,) for m in MODALITIES] + [MODALITIES]:
        hot, cold = [], []
        for i in range(args.reps + 3):  # the first 3 of each warm up
            frame = frames[i % len(frames)]
            hot.append(encode_ms(subset, frame, 0.0))
            cold.append(encode_ms(subset, frame, args.idle_ms / 1e3))
        hot_ms, cold_ms = statistics.median(hot[3:]), statistics.median(cold[3:])
        print(f"| {'+'.join(subset)} | {hot_ms:.2f} | {cold_ms:.2f} | {cold_ms / hot_ms:.1f}x |")

    print("\n| camera resolution -> 256x256 | " + " | ".join(f"{m} ms" for m in MODALITIES) + " |")
    print("|---|" + "---|" * len(MODALITIES))
    for hw in args.camera_sizes:
        camera_frames = list(World(seed=3, size_hw=hw).frames(2))
        times = [statistics.median(encode_ms((m,), camera_frames[i % 2], 0.0) for i in range(args.reps))
                 for m in MODALITIES]
        print(f"| {hw[1]}x{hw[0]} | " + " | ".join(f"{t:.2f}" for t in times) + " |")
    return 0


def _size(text: str) -> tuple[int, int]:
    """'640x480' (width x height) -> (480, 640)."""
    w, h = (int(x) for x in text.lower().split("x"))
    return h, w


if __name__ == "__main__":
    raise SystemExit(main())
