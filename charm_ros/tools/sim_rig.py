"""`charm-sim-rig`: the synthetic street world published as real sensor topics, with scripted dropouts.

A camera (with co-located LiDAR and event camera) drives along the procedural street of
charm_core.data.synthetic; every tick renders one frame and publishes RGB / depth / event Images,
a LiDAR PointCloud2, CameraInfo and the ground-truth labels, all stamped with the capture time;
with `modalities` naming thermal also a thermal camera (mono16 centi-Kelvin, as radiometric drivers
publish, and as charm-synth writes thermal/). Sensors listed in `dropouts` ("depth:5-10,rgb:12-20",
seconds since start) stay silent meanwhile; sensors listed in `faults` ("depth:frozen:8-14", see
charm_ros.runtime.faults) keep publishing with fresh stamps, but content that lies. With `prerender`
the first seconds of the drive are rendered before the first frame, in worker processes, and only
published while the rig runs (see charm_core.data.synthetic.render_ahead: live rendering costs about
a core at 10 Hz).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from typing import Iterable

import numpy as np
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header, String

from charm_core.data.synthetic import CASES, CONDITIONS, SensorFrame, World
from charm_core.data.synthetic.export import RENDERABLE, check_modalities
from charm_core.data.synthetic.render_ahead import render_ahead
from charm_core.data.synthetic.thermal import centikelvin
from charm_core.modalities import MODALITIES
from charm_ros.msgs import camera_info, images, pointclouds
from charm_ros.runtime.dropouts import dropped_at, modality_list, parse_dropouts
from charm_ros.runtime.faults import FAULTS, FaultInjector, faulted_at, parse_faults
from charm_ros.runtime.parameters import ParamSpec
from charm_ros.node.host import declare, run_node

DEPTH_ENCODINGS = ("32FC1", "16UC1")
RGB_ENCODINGS = ("rgb8", "bgr8")
# Topics relative to the rig (the live rig publishes them as ~/<name>, bags record /sim_rig/<name>).
SENSOR_TOPICS = {"rgb": "rgb/image", "depth": "depth/image", "event": "event/image", "lidar": "lidar/points",
                 "thermal": "thermal/image"}
INFO_TOPICS = {"rgb": "rgb/camera_info", "depth": "depth/camera_info", "thermal": "thermal/camera_info"}
TRUTH_TOPIC = "ground_truth"


@dataclass(frozen=True)
class RigEncoding:
    depth: str = "32FC1"      # 32FC1 (m) or 16UC1 (mm)
    rgb: str = "rgb8"         # rgb8 or bgr8
    frame_id: str = "camera_optical_frame"
    lidar_frame_id: str = "lidar"

    def __post_init__(self) -> None:
        if self.depth not in DEPTH_ENCODINGS:
            raise ValueError(f"depth encoding must be one of {DEPTH_ENCODINGS}, got {self.depth!r}")
        if self.rgb not in RGB_ENCODINGS:
            raise ValueError(f"rgb encoding must be one of {RGB_ENCODINGS}, got {self.rgb!r}")


def frame_messages(frame: SensorFrame, stamp: Time, modalities: Iterable[str], encoding: RigEncoding
                   ) -> dict[str, object]:
    """The messages of one rendered frame: relative topic -> message, all with the same stamp.

    Used by the live rig and by charm-bag-record, so recorded bags hold exactly what the rig publishes."""
    header = Header(stamp=stamp, frame_id=encoding.frame_id)
    out: dict[str, object] = {}
    for m in modalities:
        if m == "rgb":
            rgb = frame.rgb if encoding.rgb == "rgb8" else np.ascontiguousarray(frame.rgb[:, :, ::-1])
            msg = images.numpy_to_image(rgb, encoding.rgb, header)
        elif m == "depth":
            depth = frame.depth if encoding.depth == "32FC1" else \
                np.clip(np.round(frame.depth * 1000.0), 0, 65535).astype(np.uint16)
            msg = images.numpy_to_image(depth, encoding.depth, header)
        elif m == "event":
            msg = images.numpy_to_image(frame.event, "rgb8", header)
        elif m == "thermal":
            msg = images.numpy_to_image(centikelvin(frame.thermal), "mono16", header)
        else:
            msg = pointclouds.xyzi_to_pointcloud2(frame.lidar, header, frame_id=encoding.lidar_frame_id)
        out[SENSOR_TOPICS[m]] = msg
        if m in INFO_TOPICS:  # registered cameras: the camera's K at the image's own size
            out[INFO_TOPICS[m]] = camera_info.k_to_camera_info(frame.K, (msg.height, msg.width), header)
    out[TRUTH_TOPIC] = images.numpy_to_image(frame.labels, "mono8", header)
    return out


def faulted_frame(frame: SensorFrame, injector: FaultInjector, t: float, modalities: Iterable[str]) -> SensorFrame:
    """The frame as its faulty sensors report it `t` s into the fault schedule (ground truth untouched).

    The faults act on the rendered arrays, which are what the node's conversions return, so the rig
    injects exactly what `charm-bag-eval --faults` and the fault benchmark do. Call it on every frame:
    frozen faults remember the frames they repeat."""
    changed = {m: injector.apply(m, getattr(frame, m), t) for m in modalities
               if m in {f.sensor for f in injector.faults}}
    return replace(frame, **changed) if changed else frame


RIG_PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("seed", 7, "world seed"),
    ParamSpec("size", [256, 256], "image [height, width]"),
    ParamSpec("fps", 10.0, "frames per second (render rate)"),
    ParamSpec("condition", "sun", "weather / light", choices=CONDITIONS),
    ParamSpec("case", "", "sensor failure ('' = none)", choices=("", *CASES)),
    ParamSpec("modalities", ",".join(MODALITIES), f"sensors to render and publish, of {', '.join(RENDERABLE)}"),
    ParamSpec("dropouts", "", "e.g. 'depth:5-10,rgb:12-20' (seconds since start)"),
    ParamSpec("faults", "", "content faults with fresh stamps, e.g. 'depth:frozen:8-14,lidar:sparse:20-26' "
              f"(sensor:fault:start-end, seconds since start; faults: {', '.join(FAULTS)})"),
    *[ParamSpec(f"{m}.rate", 0.0, f"{m} publish rate (Hz, <= fps); 0 = fps") for m in RENDERABLE],
    ParamSpec("depth_encoding", "32FC1", "32FC1 (m) or 16UC1 (mm)", choices=DEPTH_ENCODINGS),
    ParamSpec("rgb_encoding", "rgb8", "rgb8 or bgr8", choices=RGB_ENCODINGS),
    ParamSpec("frame_id", "camera_optical_frame", "frame of the camera images"),
    ParamSpec("lidar_frame_id", "lidar", "frame of the point cloud"),
    ParamSpec("duration", 0.0, "stop after this many seconds (0 = run until shut down)"),
    ParamSpec("start_delay", 0.0, "seconds to wait before the first frame (lets subscribers start)", minimum=0.0),
    ParamSpec("prerender", 0.0, "seconds of the drive rendered before the first frame, on every core, then only "
              "published (0 = render live; about 1.5 MB of memory per frame)", minimum=0.0, maximum=600.0),
)


class SimRig(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("sim_rig", **kwargs)
        p = declare(self, RIG_PARAMETERS)
        seed, size, self.fps = p["seed"], p["size"], p["fps"]
        condition, case, schedule = p["condition"], p["case"], p["dropouts"]
        self.modalities = check_modalities(modality_list(p["modalities"]))
        self.dropouts = parse_dropouts(schedule, self.modalities)
        self.faults = FaultInjector(parse_faults(p["faults"], self.modalities), seed=seed)
        self.rates = {m: p[f"{m}.rate"] or self.fps for m in self.modalities}
        self.encoding = RigEncoding(depth=p["depth_encoding"], rgb=p["rgb_encoding"], frame_id=p["frame_id"],
                                    lidar_frame_id=p["lidar_frame_id"])
        self.duration = p["duration"]
        start_delay = p["start_delay"]
        self._validate(size)

        world_args = dict(seed=seed, size_hw=(size[0], size[1]), condition=condition, case=case or None,
                          fps=self.fps, thermal="thermal" in self.modalities)
        self.world = World(**world_args)
        self.ahead = self._render_ahead(world_args, p["prerender"])
        qos = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)
        types = {SENSOR_TOPICS["lidar"]: PointCloud2, **{t: CameraInfo for t in INFO_TOPICS.values()}}
        topics = [SENSOR_TOPICS[m] for m in self.modalities] + [INFO_TOPICS[m] for m in self.modalities
                                                                 if m in INFO_TOPICS] + [TRUTH_TOPIC]
        self.pubs = {t: self.create_publisher(types.get(t, Image), f"~/{t}", qos) for t in topics}
        # per frame: its stamp, the rig time and the sensors published (lets observers align to the schedule)
        self.status_pub = self.create_publisher(String, "~/status", 10)
        self.index = 0
        self.start = time.monotonic() + start_delay
        self.create_timer(1.0 / self.fps, self._tick)
        self.get_logger().info(f"synthetic rig: {'+'.join(self.modalities)}, seed {seed}, {size[1]}x{size[0]} @ "
                               f"{self.fps} Hz, {condition}{'/' + case if case else ''}, "
                               f"dropouts: {schedule or 'none'}, faults: {p['faults'] or 'none'}")

    def _validate(self, size: list[int]) -> None:
        """What the specs cannot say alone: the size's shape, and rates relative to fps."""
        problems = []
        if len(size) != 2 or min(size) < 16:
            problems.append(f"size must be [height, width] >= 16, got {size}")
        if self.fps <= 0:
            problems.append("fps must be > 0")
        bad_rates = [m for m, r in self.rates.items() if not 0 < r <= self.fps]
        if bad_rates:
            problems.append(f"rates of {bad_rates} must be in (0, fps]")
        if problems:
            raise ValueError("; ".join(problems))

    def _render_ahead(self, world_args: dict, seconds: float) -> list[SensorFrame]:
        """The frames of the first `seconds`, rendered now with progress in the log ([] for none)."""
        count = math.ceil(seconds * self.fps)
        if not count:
            return []
        log, start, reported = self.get_logger(), time.monotonic(), [0]

        def progress(done: int, total: int) -> None:
            if done * 10 // total > reported[0] or done == total:
                reported[0] = done * 10 // total
                log.info(f"rendering ahead: {done}/{total} frames ({time.monotonic() - start:.0f} s)")

        workers = len(os.sched_getaffinity(0))
        log.info(f"rendering the first {seconds:g} s ({count} frames) ahead in {workers} processes")
        frames = render_ahead(world_args, count, workers=workers, progress=progress)
        size = sum(a.nbytes for f in frames for a in (f.rgb, f.depth, f.event, f.lidar, f.labels, f.thermal)
                   if a is not None)
        log.info(f"rendered {count} frames ahead in {time.monotonic() - start:.1f} s ({size / 2**20:.0f} MB)")
        return frames

    def _due(self, modality: str) -> bool:
        """Publish `modality` on the frames where its (lower) rate crosses an integer count."""
        ratio = self.rates[modality] / self.fps
        return int(self.index * ratio) != int((self.index - 1) * ratio) or self.index == 0

    def _tick(self) -> None:
        elapsed = time.monotonic() - self.start
        if elapsed < 0:
            return
        if self.duration and elapsed >= self.duration:
            raise SystemExit(0)
        frame = self.ahead[self.index] if self.index < len(self.ahead) else self.world.frame_at(self.index / self.fps)
        frame = faulted_frame(frame, self.faults, elapsed, self.modalities)
        silent = dropped_at(self.dropouts, elapsed)
        live = [m for m in self.modalities if m not in silent and self._due(m)]
        faulted = [f.name for m, f in faulted_at(self.faults.faults, elapsed).items() if m in live]
        stamp = self.get_clock().now().to_msg()
        for topic, msg in frame_messages(frame, stamp, live, self.encoding).items():
            self.pubs[topic].publish(msg)
        self.status_pub.publish(String(data=json.dumps({"stamp": [stamp.sec, stamp.nanosec], "t": round(elapsed, 4),
                                                        "frame": self.index, "live": live, "faults": faulted})))
        self.index += 1


def main(args: list[str] | None = None) -> int:
    return run_node(SimRig, "sim_rig", args, parameters=RIG_PARAMETERS, summary=__doc__)


if __name__ == "__main__":
    sys.exit(main())
