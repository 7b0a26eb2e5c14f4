"""The live node's inference thread, without ROS: newest frame wins.

One thread takes the Engine's due frames, runs the newest (older ones are dropped and counted: a node
under load skips ahead instead of falling behind) and hands the result to the driver's `publish`.
Paused, it takes frames and lets them go uncounted; with nobody subscribed to an output it runs
nothing. A failure on one frame is reported and the next frame tried: a node that stays up but
silent is worse than one that says what went wrong.
"""
from __future__ import annotations

import threading
from typing import Callable

from charm_ros.runtime.engine import Engine, ModelFailure
from charm_ros.runtime.pipeline import FrameSkipped, Result

Publish = Callable[[Result, list[str]], None]  # (result, the enabled outputs someone listens to)


class InferenceWorker:
    def __init__(self, engine: Engine, now: Callable[[], float], listened: Callable[[], list[str]],
                 publish: Publish, report: Callable[[str, str], None], enabled: threading.Event,
                 context_ok: Callable[[], bool] = lambda: True) -> None:
        """`listened()`: the outputs with a subscriber; `report(level, text)` with level "warning" or
        "error"; `enabled` cleared pauses inference; `context_ok()` false means the process is shutting
        down under the thread (Ctrl-C), when failures are expected and not reported."""
        self.engine, self.now, self.listened, self.publish = engine, now, listened, publish
        self.report, self.enabled, self.context_ok = report, enabled, context_ok
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.stopping.clear()
        self.thread = threading.Thread(target=self._run, name="charm_inference", daemon=True)
        self.thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=timeout_s)
            self.thread = None

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.step()
            except Exception as exc:
                if self.stopping.is_set() or not self.context_ok():
                    return
                self.report("error", f"inference step failed: {type(exc).__name__}: {exc}")

    def step(self) -> Result | None:
        """One turn: the newest due frame run and published, or None (nothing due, paused, no listener,
        skipped or failed; the last two reported and counted by the engine)."""
        running = self.enabled.is_set()
        frames = self.engine.due(self.now(), latest=running, wait_s=0.005)  # paused: taken, not counted
        listened = self.listened() if running and frames else []
        if not listened:
            return None
        try:
            result = self.engine.run(frames[-1], self.now())
        except FrameSkipped as exc:
            self.report("warning", f"frame skipped: {exc}")
            return None
        except ModelFailure as exc:
            self.report("error", f"inference failed: {exc}")
            return None
        self.publish(result, [name for name in listened if self.engine.config.outputs[name]])
        self.engine.published(result, self.now())
        return result
