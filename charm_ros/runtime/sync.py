"""Approximate-time synchronizer over whichever sensors are alive (DESIGN.md §9), free of ROS.

add() per message, poll() for ready frames; times are float seconds (`stamp` a header stamp, `now`
the driver's clock), so the node and the bag evaluator get the same frames from the same stamps.
- The reference is the first alive sensor (a message within its `stale_timeout`) of the priority
  list; each of its messages fires at most one Frame, oldest first.
- Every other alive sensor contributes its buffered message nearest the reference stamp within
  `max_skew`; the frame waits, at most `timeout`, only while a closer partner can still come. A
  partner message may serve several frames (a slower sensor goes into every frame it is nearest to).
- Stamps that repeat, go back, or are too old for any frame that can still fire do not refresh
  liveness, so such a sensor goes stale instead of making frames wait; a sensor whose stamps run
  ahead matches nothing and is reported by unmatched(). Stamps are judged against a higher-priority
  reference only, so a lower-priority sensor on another clock cannot lock the reference out.
- A backwards jump of `now` or of one sensor's stamps (bag loop, sim-time restart) clears the buffers.
The caller owns the locking (no threads here). Cost per call is O(sensors * buffer_size^2).
The rules in full, with the cases behind them: docs/sync.md.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field, replace
from typing import Any

from charm_core.modalities import DELIVER_MODALITIES, canonical

_EPS = 1e-9  # stamps closer than this are one stamp (float seconds from sec + nanosec)
_RATE_ALPHA = 0.2  # weight of a new stamp interval in the period estimate
_PERIOD_JITTER = 0.1  # a sensor's next stamp may come this fraction of its period early
_UNMATCHED_AFTER = 1.0  # s (or 3 periods of it or of the reference, if longer) in no frame while frames fire


@dataclass
class ModalityConfig:
    name: str
    time_offset: float = 0.0  # added to the header stamp (sensor latency calibration)
    stale_timeout: float = 0.5  # alive iff a message was accepted within this long (node clock)


@dataclass
class SyncConfig:
    modalities: list[ModalityConfig]  # the enabled ones; list order is the reference priority
    max_skew: float = 0.05  # |stamp_m - stamp_ref| <= max_skew to match
    timeout: float = 0.1  # after the reference arrived, wait at most this long for alive partners
    buffer_size: int = 10  # per modality; the oldest is dropped (counted) when full
    jump_back_tolerance: float = 1.0  # a larger backwards jump of now or of stamps resets all buffers
    order: tuple[str, ...] = DELIVER_MODALITIES  # the sensors' canonical order (the model's): frames, alive lists

    def __post_init__(self) -> None:
        names = [m.name for m in self.modalities]
        if not names:
            raise ValueError("SyncConfig.modalities must name at least one modality")
        canonical(names, self.order)  # raises on unknown or repeated names
        for m in self.modalities:
            if not math.isfinite(m.time_offset):
                raise ValueError(f"time_offset of {m.name!r} must be finite, got {m.time_offset}")
            if not m.stale_timeout > 0:
                raise ValueError(f"stale_timeout of {m.name!r} must be > 0 s, got {m.stale_timeout}")
        if not self.max_skew >= 0:
            raise ValueError(f"max_skew must be >= 0 s, got {self.max_skew}")
        if not self.timeout >= 0:
            raise ValueError(f"timeout must be >= 0 s, got {self.timeout}")
        if not (isinstance(self.buffer_size, int) and self.buffer_size >= 1):
            raise ValueError(f"buffer_size must be an integer >= 1, got {self.buffer_size!r}")
        if not self.jump_back_tolerance > 0:
            raise ValueError(f"jump_back_tolerance must be > 0 s, got {self.jump_back_tolerance}")


@dataclass
class Frame:
    stamp: float  # the reference message's offset-corrected stamp
    reference: str
    data: dict[str, Any]  # modality -> the payload given to add(), canonical order
    stamps: dict[str, float]  # modality -> its offset-corrected stamp

    @property
    def subset(self) -> tuple[str, ...]:
        return tuple(self.data)


@dataclass
class ModalityStats:
    received: int = 0  # every add()
    used: int = 0  # went into a frame
    dropped: int = 0  # accepted but never used: too old, overflow, superseded, cleared by a reset
    duplicates: int = 0  # stamp already seen
    out_of_order: int = 0  # stamp older than the last consumed one
    buffered: int = 0  # waiting now; received == used + dropped + duplicates + out_of_order + buffered
    last_arrival: float | None = None  # `now` of the last accepted message
    last_refused: float | None = None  # `now` of the last message refused for its stamp (see add())
    lag: float | None = None  # `now` minus the offset-corrected stamp of the last message received
    typical_lag: float | None = None  # the same, smoothed over recent messages (since a time_offset change)
    rate_hz: float = 0.0  # from the smoothed stamp interval; 0 until two messages


@dataclass
class _Message:
    stamp: float
    data: Any
    arrival: float
    used: bool = False  # went into a frame; a partner stays buffered for the next reference messages


@dataclass
class _Stream:
    config: ModalityConfig
    buffer: list[_Message] = field(default_factory=list)  # sorted by stamp
    stats: ModalityStats = field(default_factory=ModalityStats)
    last_arrival: float | None = None
    newest: float | None = None  # newest accepted stamp since the last reset
    consumed: float | None = None  # newest stamp that went into a frame since the last reset
    period: float | None = None  # smoothed stamp interval
    matched: float | None = None  # `now` it last went into a frame, came alive, or had its buffer reset
    silenced: bool = False  # left out by content health: not alive, as if it had gone silent

    def clear(self) -> None:
        self.discard(self.buffer)
        self.newest = self.consumed = None

    def discard(self, messages: list[_Message]) -> None:
        """Remove these buffered messages, counting the ones no frame used as dropped."""
        gone = {id(m) for m in messages}
        self.stats.dropped += sum(not m.used for m in messages)
        self.buffer = [m for m in self.buffer if id(m) not in gone]


class Synchronizer:
    """Groups per-modality messages into Frames by header stamp; see the module docstring for the rules.

    `frames` and `resets` count fired frames and buffer resets (jumps back, reset()) for diagnostics.
    """

    def __init__(self, config: SyncConfig):
        self._streams: dict[str, _Stream] = {}  # priority order
        self.config = config
        self._last_fired: float | None = None
        self._last_fire_time: float | None = None  # `now` of the last frame fired
        self._clock: float | None = None  # latest `now` seen
        self.resets = 0  # buffer resets after backwards jumps (and reset() calls)
        self.frames = 0  # frames fired

    @property
    def config(self) -> SyncConfig:
        return self._config

    @config.setter
    def config(self, config: SyncConfig) -> None:
        """Apply parameters at run time: modalities that stay enabled keep their buffers and counters,
        except that a changed time_offset empties that modality's buffer (its stamps were shifted by the old one)."""
        streams = {}
        for m in config.modalities:
            stream = self._streams.get(m.name) or _Stream(m)
            if m.time_offset != stream.config.time_offset:
                stream.clear()
                stream.matched = stream.stats.typical_lag = None  # both count afresh from its next message
            stream.config = m
            streams[m.name] = stream
        self._streams, self._config = streams, config

    def add(self, modality: str, stamp: float, data: Any, now: float) -> None:
        """Buffer one message; `stamp` is its header stamp, before the modality's time offset."""
        stream = self._stream(modality)
        _check_time(stamp=stamp, now=now)
        self._advance_clock(now)
        stats = stream.stats
        stats.received += 1
        stamp += stream.config.time_offset
        stats.lag = now - stamp
        stats.typical_lag = stats.lag if stats.typical_lag is None else (
            (1 - _RATE_ALPHA) * stats.typical_lag + _RATE_ALPHA * stats.lag)
        if stream.newest is not None and stamp < stream.newest - self.config.jump_back_tolerance:
            self._reset(keep_alive=True, now=now)
        if self._last_fired is not None and \
                stamp < self._last_fired - self.config.max_skew - self.config.timeout - _EPS and \
                self._outranked(modality, now):
            # too old for any frame the reference can still fire, even had it waited `timeout` for
            # this message: a stamp from another clock (zero, device time since boot), not a late
            # sensor. A sensor that outranks the reference is not judged by its frames: it becomes
            # the reference, whatever clock the one before ran on (see _fire).
            stats.dropped += 1
            stats.last_refused = now
            return
        if stream.consumed is not None and stamp <= stream.consumed + _EPS:
            if stamp >= stream.consumed - _EPS:
                stats.duplicates += 1
            else:
                stats.out_of_order += 1
            stats.last_refused = now
            return
        buffer = stream.buffer
        at = bisect.bisect_left([m.stamp for m in buffer], stamp - _EPS)
        if at < len(buffer) and buffer[at].stamp <= stamp + _EPS:
            stats.duplicates += 1
            stats.last_refused = now
            return
        if stream.matched is None or not self._is_alive(stream, now):
            stream.matched = now  # (back) alive: it has had no chance to match yet
        stream.last_arrival = now
        if stream.newest is not None and stamp > stream.newest:
            interval = stamp - stream.newest
            if interval <= stream.config.stale_timeout:  # a gap is an outage, not the rate
                stream.period = interval if stream.period is None else (
                    (1 - _RATE_ALPHA) * stream.period + _RATE_ALPHA * interval)
        stream.newest = stamp if stream.newest is None else max(stream.newest, stamp)
        if self._last_fired is not None and stamp < self._last_fired - self.config.max_skew - _EPS:
            stats.dropped += 1
            return
        buffer.insert(at, _Message(stamp, data, now))
        if len(buffer) > self.config.buffer_size:
            stream.discard(buffer[:1])

    def poll(self, now: float) -> list[Frame]:
        """Frames ready at `now`, oldest first."""
        _check_time(now=now)
        self._advance_clock(now)
        return self._fire(now, force=False)

    def flush(self) -> list[Frame]:
        """Fire every waiting reference message now, as if its timeout had passed (end of a bag)."""
        return [] if self._clock is None else self._fire(self._clock, force=True)

    def alive(self, now: float) -> tuple[str, ...]:
        """Modalities that had a message accepted within their stale_timeout, canonical order."""
        return canonical((name for name, s in self._streams.items() if self._is_alive(s, now)), self.config.order)

    def refusing(self, now: float) -> tuple[str, ...]:
        """Modalities with a message refused for its stamp within their stale_timeout: still arriving,
        but with stamps that repeat, go back or are too old (see add()), canonical order."""
        return canonical((name for name, s in self._streams.items() if self._is_recent(s.stats.last_refused, s, now)),
                         self.config.order)

    def unmatched(self, now: float) -> dict[str, float]:
        """Alive modalities that went into no frame for over 1 s (or 3 periods of it or of the
        reference, if longer) while frames fired, with for how long: their messages arrive but match
        no reference stamp within max_skew (stamps from another clock running ahead, a wrong
        time_offset). Too-old stamps are refused instead (see refusing()); these are the rest."""
        reference = self.reference(now)
        if reference is None or self._last_fire_time is None:
            return {}
        ref_period = self._streams[reference].period or 0.0
        out = {}
        for name, s in self._streams.items():
            if name == reference or s.matched is None or not self._is_alive(s, now):
                continue
            window = max(_UNMATCHED_AFTER, 3 * (s.period or 0.0), 3 * ref_period)
            if now - s.matched > window and self._last_fire_time > s.matched:
                out[name] = now - s.matched
        return out

    def silence(self, modality: str, silenced: bool) -> None:
        """Leave a sensor out (its content lies) exactly as if it had gone silent: not alive, its buffer
        emptied, so frames neither wait for it nor take it; un-silenced, its next message brings it back."""
        stream = self._stream(modality)
        if silenced and not stream.silenced:
            stream.clear()
        stream.silenced = silenced

    def reference(self, now: float) -> str | None:
        """The modality whose messages define frames at `now`: the highest-priority alive one."""
        return next((name for name, s in self._streams.items() if self._is_alive(s, now)), None)

    def age(self, modality: str, now: float) -> float | None:
        """Seconds since the modality's last accepted message (None if it never had one)."""
        last = self._stream(modality).last_arrival
        return None if last is None else now - last

    def stats(self) -> dict[str, ModalityStats]:
        """A snapshot per modality (priority order); counters are cumulative across resets."""
        return {name: replace(s.stats, buffered=sum(not m.used for m in s.buffer), last_arrival=s.last_arrival,
                              rate_hz=1.0 / s.period if s.period else 0.0)
                for name, s in self._streams.items()}

    def reset(self) -> None:
        """Forget buffers, stamps and liveness (counters are kept), e.g. after the node's time source changed."""
        self._reset(keep_alive=False, now=None)
        self._clock = None

    def _stream(self, modality: str) -> _Stream:
        stream = self._streams.get(modality)
        if stream is None:
            raise ValueError(f"unknown modality {modality!r}; enabled: {list(self._streams)}")
        return stream

    def _outranked(self, modality: str, now: float) -> bool:
        """Whether the reference comes before this modality in the priority."""
        names = list(self._streams)
        reference = self.reference(now)
        return reference is not None and names.index(reference) < names.index(modality)

    def _is_alive(self, stream: _Stream, now: float) -> bool:
        return not stream.silenced and self._is_recent(stream.last_arrival, stream, now)

    @staticmethod
    def _is_recent(time: float | None, stream: _Stream, now: float) -> bool:
        return time is not None and now - time <= stream.config.stale_timeout + _EPS

    def _advance_clock(self, now: float) -> None:
        """Track `now`; a large backwards jump resets, carrying liveness over to the new clock."""
        if self._clock is not None and now < self._clock - self.config.jump_back_tolerance:
            alive = [s for s in self._streams.values() if self._is_alive(s, self._clock)]
            self._reset(keep_alive=False, now=now)
            for stream in alive:
                stream.last_arrival = stream.matched = now
            self._clock = now
        self._clock = now if self._clock is None else max(self._clock, now)

    def _reset(self, keep_alive: bool, now: float | None) -> None:
        for stream in self._streams.values():
            stream.clear()
            stream.matched = now if keep_alive and stream.matched is not None else None
            if not keep_alive:
                stream.last_arrival = None
        self._last_fired = self._last_fire_time = None
        self.resets += 1

    def _fire(self, now: float, force: bool) -> list[Frame]:
        frames: list[Frame] = []
        reference = self.reference(now)
        if reference is None:
            return frames
        ref = self._streams[reference]
        if self._last_fired is not None and ref.newest is not None and \
                ref.newest < self._last_fired - self.config.jump_back_tolerance:
            self._last_fired = None  # frames so far came from a reference on another clock, running ahead
        partners = [s for name, s in self._streams.items() if name != reference]
        while True:
            head = next((m for m in ref.buffer if not m.used and (
                self._last_fired is None or m.stamp > self._last_fired + _EPS)), None)
            if head is None:
                return frames
            expired = force or now - head.arrival >= self.config.timeout - _EPS
            matches: dict[str, _Message] = {}
            for stream in partners:
                match, wait = self._match(stream, head.stamp, self._is_alive(stream, now))
                if wait and not expired:
                    return frames
                if match is not None:
                    matches[stream.config.name] = match
            frames.append(self._emit(ref, head, matches, now))

    def _match(self, stream: _Stream, stamp: float, alive: bool) -> tuple[_Message | None, bool]:
        """(closest buffered partner within max_skew or None, whether a closer one may still come)."""
        best: _Message | None = None
        best_gap = math.inf
        for m in stream.buffer:
            gap = abs(m.stamp - stamp)
            if gap <= self.config.max_skew + _EPS and gap < best_gap - _EPS:
                best, best_gap = m, gap
        if not alive or (stream.newest is not None and stream.newest >= stamp - _EPS):
            return best, False  # nothing more will come, or later messages can only be farther away
        if stream.newest is None or stream.period is None:
            return best, best is None  # no rate known: take what is here, else wait for anything
        # its next message is expected one period after its newest (a little early at most):
        # wait if that one can land in the window closer than what is here
        expected = stream.newest + stream.period
        wait = (expected - _PERIOD_JITTER * stream.period <= stamp + self.config.max_skew
                and abs(expected - stamp) < best_gap - _EPS)
        return best, wait

    def _emit(self, ref: _Stream, head: _Message, matches: dict[str, _Message], now: float) -> Frame:
        used = {ref.config.name: head, **matches}
        for name, message in used.items():
            stream = self._streams[name]
            self._consume(stream, message, keep=stream is not ref)
            stream.matched = now
        self._last_fired, self._last_fire_time = head.stamp, now
        horizon = head.stamp - self.config.max_skew - _EPS
        for stream in self._streams.values():
            stream.discard([m for m in stream.buffer if m.stamp < horizon])
        self.frames += 1
        order = canonical(used, self.config.order)
        return Frame(stamp=head.stamp, reference=ref.config.name,
                     data={name: used[name].data for name in order},
                     stamps={name: used[name].stamp for name in order})

    def _consume(self, stream: _Stream, message: _Message, keep: bool) -> None:
        """Take a message into a frame; older ones of the same modality can no longer be used. A partner
        is kept (`keep`) for the next reference messages: a slower sensor serves each one it is nearest to."""
        stream.stats.used += not message.used
        message.used = True
        stream.discard([m for m in stream.buffer if m.stamp < message.stamp or (m is message and not keep)])
        stream.consumed = message.stamp if stream.consumed is None else max(stream.consumed, message.stamp)


def _check_time(**values: float) -> None:
    """Reject NaN/inf times here: one would silently poison every later comparison."""
    for name, value in values.items():
        try:
            finite = math.isfinite(value)
        except TypeError:
            finite = False
        if not finite:
            raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")

