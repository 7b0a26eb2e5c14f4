"""`charm-bag-record`: record the synthetic sensor rig into a rosbag2 (sqlite3 or mcap).

The frames are rendered and turned into messages by the same code as the live rig (sim_rig.frame_messages),
then written with the `rosbags` library under the rig's topics (/sim_rig/...), so anyone can try bag
evaluation without a robot. `--faults` records sensors whose content lies (as the rig's `faults`), so a
bag holds what a robot with a hung driver would have recorded. No ROS graph is involved: the result is
deterministic (same arguments, same bag contents), and stamps start at --start-time.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from builtin_interfaces.msg import Time
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from tqdm import tqdm

from charm_core.cli_help import HelpFormatter
from charm_core.data.synthetic import CASES, CONDITIONS, World
from charm_core.data.synthetic.export import RENDERABLE, check_modalities
from charm_core.modalities import MODALITIES
from charm_ros.runtime.dropouts import dropped_at, modality_list, parse_dropouts
from charm_ros.runtime.faults import FAULTS, FaultInjector, parse_faults
from charm_ros.tools.sim_rig import DEPTH_ENCODINGS, RGB_ENCODINGS, RigEncoding, faulted_frame, frame_messages

RIG_PREFIX = "/sim_rig/"
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


def record(out: str | Path, duration: float, storage: str = "mcap", fps: float = 10.0, seed: int = 7,
           size: tuple[int, int] = (256, 256), condition: str = "sun", case: str | None = None,
           dropouts: str = "", encoding: RigEncoding = RigEncoding(), start_time: float = 1_700_000_000.0,
           progress: bool = True, modalities: tuple[str, ...] = MODALITIES, faults: str = "") -> dict[str, int]:
    """Write `duration` seconds of the rig's `modalities` to a new bag at `out`, with `dropouts` silent and
    `faults` lying; returns message counts per topic."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; rosbag2 writes a new directory")
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
    if duration <= 0 or fps <= 0:
        raise ValueError("duration and fps must be > 0")
    modalities = check_modalities(modalities)
    schedule = parse_dropouts(dropouts, modalities)
    injector = FaultInjector(parse_faults(faults, modalities), seed=seed)
    world = World(seed=seed, size_hw=size, condition=condition, case=case, fps=fps, thermal="thermal" in modalities)
    typestore = get_typestore(Stores.ROS2_KILTED)
    counts: dict[str, int] = {}
    frames = int(round(duration * fps))
    with Writer(out, version=8, storage_plugin=STORAGES[storage]) as writer:
        connections = {}
        for i in tqdm(range(frames), desc="charm-bag-record", unit="frame", disable=not progress):
            t = i / fps
            stamp_ns = int(round((start_time + t) * 1e9))
            stamp = Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
            live = [m for m in modalities if m not in dropped_at(schedule, t)]
            frame = faulted_frame(world.frame_at(t), injector, t, modalities)
            for topic, msg in frame_messages(frame, stamp, live, encoding).items():
                name = RIG_PREFIX + topic
                if name not in connections:
                    msgtype = type(msg).__module__.split(".")[0] + "/msg/" + type(msg).__name__
                    connections[name] = writer.add_connection(name, msgtype, typestore=typestore)
                writer.write(connections[name], stamp_ns, serialize_message(msg))
                counts[name] = counts.get(name, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="charm-bag-record", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--out", required=True, help="bag directory to create")
    parser.add_argument("--storage", default="mcap", choices=sorted(STORAGES))
    parser.add_argument("--duration", type=float, required=True, help="seconds of rig time")
    parser.add_argument("--fps", type=float, default=10.0, help="frames per second of rig time")
    parser.add_argument("--modalities", default=",".join(MODALITIES),
                        help=f"sensors to record, comma-separated, of {','.join(RENDERABLE)}")
    parser.add_argument("--dropouts", action="append", default=[], metavar="SENSOR:START-END",
                        help="e.g. depth:10-20,rgb:30-35 (seconds from the start); repeat or comma-separate")
    parser.add_argument("--faults", action="append", default=[], metavar="SENSOR:FAULT:START-END",
                        help=f"content faults, e.g. depth:frozen:10-20 (faults: {', '.join(FAULTS)}); repeat or "
                             "comma-separate")
    parser.add_argument("--seed", type=int, default=7, help="world seed")
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    parser.add_argument("--condition", default="sun", choices=CONDITIONS, help="weather / light")
    parser.add_argument("--case", default=None, choices=CASES, help="sensor failure case (default: none)")
    parser.add_argument("--depth-encoding", default="32FC1", choices=DEPTH_ENCODINGS, help="32FC1 (m) or 16UC1 (mm)")
    parser.add_argument("--rgb-encoding", default="rgb8", choices=RGB_ENCODINGS,
                        help="Image encoding of the RGB camera")
    parser.add_argument("--start-time", type=float, default=1_700_000_000.0, help="stamp of the first frame (s)")
    args = parser.parse_args(argv)
    try:
        counts = record(args.out, args.duration, args.storage, args.fps, args.seed, tuple(args.size),
                        args.condition, args.case, ",".join(args.dropouts),
                        RigEncoding(depth=args.depth_encoding, rgb=args.rgb_encoding), args.start_time,
                        modalities=modality_list(args.modalities), faults=",".join(args.faults))
    except (ValueError, FileExistsError) as exc:
        parser.error(str(exc))
    for topic, n in sorted(counts.items()):
        print(f"{n:6d}  {topic}")
    print(f"wrote {args.out} ({args.storage})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
