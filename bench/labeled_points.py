"""What ~/labeled_points and outputs.resolution camera add to a frame, against the frame's own work.

    .venv/bin/python bench/labeled_points.py [--points 100000] [--reps 30]

A synthetic rgb+LiDAR frame (256x256 camera, the shipped checkpoint at its training size, the
process set up as the node's) whose sweep is tiled and jittered to `--points` points. Per frame, the
median over `--reps`: the pipeline (encode + forward, LiDAR raster included), then for
~/labeled_points the projection and mask look-up (`point_labels`), the whole message
(`labeled_points_message`) and rclpy's serialization of it (what publishing copies). A second table:
the camera-resolution resize of labels and confidence (outputs.resolution: camera) per camera size.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from rclpy.serialization import serialize_message

from charm_core.data.synthetic import World
from charm_core.encoders import Letterbox
from charm_core.inference import Predictor
from charm_core.malloc_tuning import retain_freed_memory
from charm_ros.msgs.outputs import labeled_points_message, point_labels
from charm_ros.paths import share_path
from charm_ros.runtime.pipeline import Pipeline, PipelineConfig, SensorSample
from charm_ros.runtime.sync import Frame


def median_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps + 2):  # two warm-up calls
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times[2:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--checkpoint", default=str(share_path("models", "charm_tiny_synthetic.safetensors")))
    args = parser.parse_args()
    retain_freed_memory()
    f = World(seed=3, size_hw=(256, 256)).frame_at(1.0)
    rng = np.random.default_rng(0)
    tiles = -(-args.points // len(f.lidar))
    cloud = np.concatenate([f.lidar + rng.normal(0, 0.02, f.lidar.shape).astype(np.float32) * [1, 1, 1, 0]
                            for _ in range(tiles)])[:args.points]
    predictor = Predictor.from_checkpoint(args.checkpoint, device="cpu")
    pipeline = Pipeline(predictor, PipelineConfig(input_size=predictor.info.provenance.get("input_size", [256, 256]),
                                                  geometry=f.geometry))
    pipeline.set_camera("rgb", f.K, (256, 256))
    data = {"rgb": SensorSample(f.rgb, 1.0, "camera"), "lidar": SensorSample(cloud, 1.0, "lidar")}
    frame = Frame(stamp=1.0, reference="rgb", data=data, stamps={"rgb": 1.0, "lidar": 1.0})
    result = pipeline.process(frame)
    frame_ms = median_ms(lambda: pipeline.process(frame), args.reps)
    labels_ms = median_ms(lambda: point_labels(result), args.reps)
    message_ms = median_ms(lambda: labeled_points_message(result), args.reps)
    msg = labeled_points_message(result)
    serialize = median_ms(lambda: serialize_message(msg), args.reps)
    print(f"{len(cloud)} points, {(point_labels(result)[1] != 255).mean():.0%} of them in the image; "
          f"frame = rgb+lidar pipeline (encode + forward), {predictor.device}")
    print("| frame ms | point labels ms | ~/labeled_points message ms | serialize ms | message / frame |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {frame_ms:.1f} | {labels_ms:.1f} | {message_ms:.1f} | {serialize:.1f} | "
          f"{(message_ms + serialize) / frame_ms:.0%} |")

    print("\n| camera -> network 256x256 | resize labels + confidence to the camera ms |\n|---|---:|")
    for hw in ((256, 256), (480, 640), (720, 1280)):
        box = Letterbox.fit(hw, (256, 256))
        labels = rng.integers(0, 25, box.content_hw).astype(np.uint8)
        confidence = rng.random(box.content_hw, dtype=np.float32)
        ms = median_ms(lambda: (box.to_source(labels), box.to_source(confidence)), args.reps)
        print(f"| {hw[1]}x{hw[0]} | {ms:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
