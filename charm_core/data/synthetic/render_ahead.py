"""A drive's first frames rendered ahead of time, in worker processes.

Rendering a 256x256 frame of five sensors costs about a tenth of a second of one core (ray casting in
numpy), so a live rig at 10 Hz spends a core on its own rendering. On a machine whose cores the node
under test shares, that rendering, not the node, sets the rate. A rig that renders its frames first and
then only publishes them leaves the cores to the node, as real sensors would.

Frames are the ones `World.frame_at(k / fps)` returns (it is deterministic in seed, time, condition and
case), whatever the number of workers.
"""
from __future__ import annotations

import multiprocessing
from typing import Any, Callable

from charm_core.data.synthetic.export import START_METHOD, single_threaded_children
from charm_core.data.synthetic.world import SensorFrame, World

CHUNK = 16  # frames per task: consecutive frames share camera renders inside a task


def _render_chunk(args: tuple[dict[str, Any], int, int]) -> list[SensorFrame]:
    world_args, start, stop = args
    world = World(**world_args)
    return [world.frame_at(k / world.fps) for k in range(start, stop)]


def render_ahead(world_args: dict[str, Any], count: int, workers: int = 2,
                 progress: Callable[[int, int], None] | None = None) -> list[SensorFrame]:
    """Frames 0..count-1 of `World(**world_args)` (at t = k / fps), in order.

    workers > 1 renders chunks of consecutive frames in spawned processes (the caller needs the usual
    `if __name__ == "__main__":` guard when it is a script); `progress(done, count)` is called as
    chunks finish, in order.
    """
    if count < 0 or workers < 1:
        raise ValueError(f"expected count >= 0 and workers >= 1, got {count} and {workers}")
    World(**world_args)  # bad arguments fail here, in the caller, with the World's own message
    tasks = [(world_args, start, min(start + CHUNK, count)) for start in range(0, count, CHUNK)]
    frames: list[SensorFrame] = []

    def collect(chunks) -> list[SensorFrame]:
        for chunk in chunks:
            frames.extend(chunk)
            if progress is not None:
                progress(len(frames), count)
        return frames

    if workers == 1 or len(tasks) <= 1:
        return collect(map(_render_chunk, tasks))
    with single_threaded_children():
        pool = multiprocessing.get_context(START_METHOD).Pool(min(workers, len(tasks)))
    with pool:
        return collect(pool.imap(_render_chunk, tasks))
