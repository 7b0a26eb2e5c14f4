"""What the node reports on /diagnostics, decided without ROS so it can be tested directly.

Levels: OK (every enabled sensor alive and in step, model fine; also a node paused by ~/enable or
not active in its lifecycle, which is an operator's choice), WARN (running on a degraded subset:
a sensor stale, or alive but unmatched or stamped off the reference's clock; an input or output whose
QoS or type does not match its peers), ERROR (no sensor alive, the model failed on the last frame, or
the node clock cannot advance). Frames dropped under load (latest wins) and rejected messages are
counted, not a level: the per-sensor message names the last rejection.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

OK, WARN, ERROR = 0, 1, 2
# Stamps this far from the reference's (arrival-to-stamp lags compared) are a clock or time_offset
# error, not latency: sensors' latencies differ by tens, at most a few hundred, milliseconds.
OFF_CLOCK_S = 0.5


@dataclass
class ModalityHealth:
    name: str
    alive: bool
    age: float | None          # seconds since the last valid message (None: never)
    rate_hz: float
    received: int
    used: int
    dropped: int
    rejected: int
    last_error: str = ""
    stamps_refused: bool = False  # messages still arrive, but the synchronizer refuses their stamps
    rejecting: bool = False    # messages were rejected (conversion, checks) within its stale_timeout
    left_out: str = ""         # why recent frames had it but did not use it (e.g. no CameraInfo); "" = used
    info_rejected: int = 0     # its CameraInfo messages rejected (rgb, depth)
    info_error: str = ""       # the last CameraInfo rejection reason
    lag: float | None = None   # arrival minus (offset-corrected) header stamp of the last message, s
    unmatched_s: float | None = None  # alive, but in no frame for this long (see Synchronizer.unmatched)
    offset_s: float | None = None  # its stamps minus the reference's, from smoothed lags (None for the reference)
    qos_warning: str = ""      # its topics' QoS or type does not match their publishers (what to change)
    content: str = ""          # a content fault ("frozen, 14 identical frames over 1.4 s: left out"); "" = healthy
    excluded: bool = False     # left out of the subset for that fault (content health)


@dataclass
class PipelineHealth:
    enabled: tuple[str, ...]
    modalities: list[ModalityHealth]
    subset: tuple[str, ...]            # of the last published frame
    frames: int                        # published
    frames_dropped: int                # superseded before inference (latest wins)
    frames_skipped: int                # could not be processed (e.g. no CameraInfo)
    encode_ms: float | None            # latencies, medians over recent frames: sensor encoding
    inference_ms: float | None         # model forward
    end_to_end_ms: float | None        # reference stamp -> mask published
    output_rate_hz: float
    model_error: str = ""
    clock_error: str = ""              # the node clock cannot advance (use_sim_time without /clock)
    reference: str | None = None       # the sensor whose stamps define frames
    gpu_memory_mb: float | None = None
    paused: bool = False               # ~/enable false: sensors taken, no inference
    output_warnings: dict[str, str] = field(default_factory=dict)  # output topic -> incompatible subscribers
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class StatusReport:
    name: str
    level: int
    message: str
    values: dict[str, str]


def assess(health: PipelineHealth) -> list[StatusReport]:
    """One status for the pipeline, then one per enabled modality."""
    alive = tuple(m.name for m in health.modalities if m.alive)
    excluded = [m.name for m in health.modalities if m.excluded]
    missing = [m for m in health.enabled if m not in alive and m not in excluded]
    unmatched = [m.name for m in health.modalities if m.alive and m.unmatched_s is not None]
    off_clock = [m for m in health.modalities if m.alive and m.unmatched_s is None and _off_clock(m)]
    left_out = [m.name for m in health.modalities if m.alive and m.left_out]
    running = "+".join(m for m in alive if m not in unmatched and m not in left_out)
    qos = [m.name for m in health.modalities if m.qos_warning]
    # a sensor whose topics do not connect (QoS, type) or stay silent: named where "no <sensor>" does not already
    qos_note = [f"{'+'.join(qos)}: see the sensor status"] if qos else []
    if health.model_error and not health.paused:  # a paused node runs no frame that could clear it
        level, message = ERROR, f"model failure: {health.model_error}"
    elif health.clock_error:
        level, message = ERROR, health.clock_error
    elif health.paused:
        level, message = OK, f"paused by ~/enable: no inference (sensors alive: {'+'.join(alive) or 'none'})"
    elif not alive:
        level, message = ERROR, "no sensor input alive" + (f" ({qos_note[0]})" if qos else "")
    elif not running:
        level, message = ERROR, f"sensors alive ({'+'.join(alive)}) but none usable: see their status"
    elif missing or unmatched or off_clock or left_out or qos or excluded:
        connects = [m for m in qos if m not in missing]
        why = ([f"no {', '.join(missing)}"] if missing else []) + [
            f"{m} left out: content {_content_kind(health, m)}" for m in excluded] + [
            f"{m} unmatched" for m in unmatched] + [
            f"{m.name} stamps {_offset(m, health, '', lags=False)}" for m in off_clock] + [
            f"{m} left out" for m in left_out] + ([f"{'+'.join(connects)}: see the sensor status"] if connects else [])
        level, message = WARN, f"degraded: running on {running} ({'; '.join(why)})"
    else:
        level, message = OK, f"running on {'+'.join(alive)}"
    values = {
        "excluded": "+".join(excluded) or "none",
        "lifecycle_state": "active",
        "enabled": str(not health.paused).lower(),
        "alive": "+".join(alive) or "none",
        "subset": "+".join(health.subset) or "none",
        "frames": str(health.frames),
        "frames_dropped": str(health.frames_dropped),
        "frames_skipped": str(health.frames_skipped),
        "output_rate_hz": f"{health.output_rate_hz:.2f}",
        "encode_ms": _fmt(health.encode_ms),
        "inference_ms": _fmt(health.inference_ms),
        "end_to_end_ms": _fmt(health.end_to_end_ms),
        **({"gpu_memory_mb": f"{health.gpu_memory_mb:.0f}"} if health.gpu_memory_mb is not None else {}),
        **health.extra,
    }
    reports = [StatusReport("charm: pipeline", level, message, values)]
    for m in health.modalities:
        if m.content:
            m_level, m_message = WARN, m.content
        elif m.qos_warning:
            m_level, m_message = WARN, ("alive" if m.alive else "no message yet" if m.age is None else
                                        f"stale for {m.age:.1f} s") + f": {m.qos_warning}"
        elif not m.alive:
            m_level, m_message = WARN, ("no message yet" if m.age is None else f"stale for {m.age:.1f} s")
            if m.stamps_refused:
                m_message = ("no usable message" if m.age is None else m_message) + (
                    f": messages arrive, but their header stamps repeat, go back or are "
                    f"{_offset(m, health, f'lag {_fmt(m.lag, 3)} s behind arrival')}: fix the "
                    f"publisher's clock or set {m.name}.time_offset")
            elif m.rejecting:
                m_message = ("no usable message" if m.age is None else m_message) + (
                    f": messages arrive, but are rejected: {m.last_error}")
        elif m.left_out:
            m_level, m_message = WARN, f"alive, but left out of frames: {m.left_out}" + (
                f"; its CameraInfo is rejected: {m.info_error}" if m.info_error else "")
        elif m.unmatched_s is not None:
            m_level, m_message = WARN, (
                f"alive, but in no frame for {m.unmatched_s:.1f} s: its stamps are "
                f"{_offset(m, health, 'not within sync.max_skew of the reference')} (beyond sync.max_skew): "
                f"fix the publisher's clock or set {m.name}.time_offset")
        elif _off_clock(m):
            m_level, m_message = WARN, (
                f"alive, but its stamps are {_offset(m, health, '')}, more than sensor latencies differ: "
                f"unless its latency really is that different, "
                f"frames pair it with another instant: fix the publisher's clock or set {m.name}.time_offset")
        elif (m.rejected and m.last_error) or m.info_error:
            notes = ([f"rejected some: {m.last_error}"] if m.rejected and m.last_error else []) + (
                [f"CameraInfo rejected: {m.info_error}"] if m.info_error else [])
            m_level, m_message = OK, f"alive ({'; '.join(notes)})"
        else:
            m_level, m_message = OK, "alive"
        reports.append(StatusReport(f"charm: {m.name}", m_level, m_message, {
            "alive": str(m.alive).lower(), "age_s": _fmt(m.age, 3), "rate_hz": f"{m.rate_hz:.2f}",
            "received": str(m.received), "used": str(m.used), "dropped": str(m.dropped),
            "rejected": str(m.rejected), "last_error": m.last_error, "stamp_lag_s": _fmt(m.lag, 3),
            "stamp_offset_s": _fmt(m.offset_s, 3), "unmatched_s": _fmt(m.unmatched_s), "left_out": m.left_out,
            "camera_info_rejected": str(m.info_rejected), "camera_info_error": m.info_error,
            "qos_warning": m.qos_warning, "content": m.content or "healthy",
        }))
    return reports + [output_report(health.output_warnings)]


def _content_kind(health: PipelineHealth, name: str) -> str:
    """'frozen' out of a sensor's content text ('depth: frozen, ...')."""
    text = next(m.content for m in health.modalities if m.name == name)
    return text.split(",")[0].split(": ")[-1]


def output_report(warnings: dict[str, str]) -> StatusReport:
    """The outputs' status: WARN naming each output topic that has a subscriber it cannot serve."""
    if not warnings:
        return StatusReport("charm: outputs", OK, "every subscriber's QoS matches", {})
    return StatusReport("charm: outputs", WARN, "; ".join(warnings.values()), dict(warnings))


def idle_reports(state: str, output_warnings: dict[str, str]) -> list[StatusReport]:
    """What a node outside 'active' reports (no sensors subscribed, no model loaded after a deactivate):
    its lifecycle state and how to leave it."""
    hint = {"unconfigured": "configure, then activate, through ~/change_state",
            "inactive": "activate through ~/change_state"}.get(state, "")
    message = f"{state}: no inference" + (f" ({hint})" if hint else "")
    return [StatusReport("charm: pipeline", OK, message, {"lifecycle_state": state}),
            output_report(output_warnings)]


class ReportSchedule:
    """When /diagnostics goes out: every `period_s`, and at once when the state changes (a sensor dying
    or returning, the level or the lifecycle state; not the per-frame subset, which alternates by
    design when a faster reference outruns its partners: 30 Hz RGB, 10 Hz LiDAR) or any status' level
    does (a QoS mismatch appearing or fixed: a warning a user waits for, which a period would delay)."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self.last_state: tuple | None = None
        self.last_levels: tuple = ()
        self.last_time = -math.inf

    def due(self, lifecycle_state: str, reports: list[StatusReport], now: float) -> tuple[bool, bool]:
        """(publish now, the pipeline's state changed: worth a log line) for the reports at monotonic `now`."""
        pipeline = reports[0]
        state = (lifecycle_state, pipeline.level, pipeline.values.get("alive"), pipeline.values.get("enabled"))
        levels = tuple((r.name, r.level) for r in reports)
        changed = state != self.last_state
        if not changed and levels == self.last_levels and now - self.last_time < self.period_s:
            return False, False
        self.last_state, self.last_levels, self.last_time = state, levels, now
        return True, changed


def clock_error(ros_time_active: bool, now_ns: int) -> str:
    """Why nothing can advance when the node runs on /clock that never came."""
    if ros_time_active and now_ns == 0:
        return ("use_sim_time is true but no /clock has arrived: sensor liveness and sync timeouts "
                "cannot advance (play the bag with --clock, or set use_sim_time false)")
    return ""


def _off_clock(m: ModalityHealth) -> bool:
    return m.offset_s is not None and abs(m.offset_s) > OFF_CLOCK_S


def _offset(m: ModalityHealth, health: PipelineHealth, unknown: str, lags: bool = True) -> str:
    """'2.000 s ahead of rgb's (arrival minus stamp: depth -1.997 s, rgb 0.003 s)' from the sensor's
    stamp offset to the reference, else `unknown`. The lags against this computer's clock show which
    of the two clocks is off when this one is synchronized."""
    reference = next((r for r in health.modalities if r.name == health.reference), None)
    if m.offset_s is None or reference is None:
        return unknown
    detail = "" if not lags or None in (m.lag, reference.lag) else \
        f" (arrival minus stamp: {m.name} {m.lag:.3f} s, {reference.name} {reference.lag:.3f} s)"
    return offset_text(m.offset_s, reference.name) + detail


def offset_text(offset_s: float, reference: str) -> str:
    """'2.000 s ahead of rgb's': one wording for the node's diagnostics and the bag evaluator's report."""
    return f"{abs(offset_s):.3f} s {'ahead of' if offset_s > 0 else 'behind'} {reference}'s"


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
