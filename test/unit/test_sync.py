"""Synchronizer behaviour: subsets, dropouts and rejoins, mixed rates, offsets, bad stamps, bag loops."""
from __future__ import annotations

import random

import pytest

from charm_core.modalities import MODALITIES, all_subsets
from charm_ros.runtime.sync import Frame, ModalityConfig, SyncConfig, Synchronizer

TICK = 0.005  # the node's poll timer in these simulations


def make_sync(names=MODALITIES, **kwargs) -> Synchronizer:
    offsets = kwargs.pop("offsets", {})
    stale = kwargs.pop("stale_timeout", 0.5)
    mods = [ModalityConfig(n, time_offset=offsets.get(n, 0.0), stale_timeout=stale) for n in names]
    return Synchronizer(SyncConfig(mods, **kwargs))


def stream(name, rate, t0=0.0, t1=1.0, latency=0.0, stamp_shift=0.0, jitter=0.0, seed=0):
    """Events (arrival, name, header stamp) of a sensor at `rate` Hz whose true capture times lie in [t0, t1]."""
    rng = random.Random(seed)
    events, k = [], 0
    while t0 + k / rate <= t1 + 1e-9:
        true = t0 + k / rate
        stamp = true + stamp_shift + rng.uniform(-jitter, jitter)
        events.append((true + latency + rng.uniform(0, jitter), name, stamp))
        k += 1
    return events


def simulate(sync: Synchronizer, events, tail=1.0, tick=TICK):
    """Feed events in arrival order like the node: poll after every add and on a timer; flush at the end.

    Returns (fire time, Frame) pairs. Payloads are (name, stamp) so frames can be traced to messages.
    """
    events = sorted(events, key=lambda e: e[0])
    out: list[tuple[float, Frame]] = []
    t = events[0][0]
    for arrival, name, stamp in events:
        while t < arrival:
            out += [(t, f) for f in sync.poll(t)]
            t += tick
        sync.add(name, stamp, (name, stamp), arrival)
        out += [(arrival, f) for f in sync.poll(arrival)]
    end = events[-1][0] + tail
    while t < end:
        out += [(t, f) for f in sync.poll(t)]
        t += tick
    return out + [(end, f) for f in sync.flush()]


def check_invariants(sync: Synchronizer, fired, max_skew=0.05):
    """What must hold for any input: monotone frames, each message the reference of one frame at most
    (a partner may serve several), accounting adds up."""
    frames = [f for _, f in fired]
    assert all(a.stamp < b.stamp for a, b in zip(frames, frames[1:])), "frame stamps must increase"
    references = [f.data[f.reference] for f in frames]
    assert len(references) == len(set(references)), "a reference message fired twice"
    partners: set = set()
    for f in frames:  # what went out as a partner is not published again as a new frame
        assert f.data[f.reference] not in partners, "a partner message fired again as a reference"
        partners.update(p for name, p in f.data.items() if name != f.reference)
    for f in frames:
        assert f.data[f.reference] == (f.reference, f.stamps[f.reference] - _offset(sync, f.reference))
        assert f.stamps[f.reference] == f.stamp
        assert all(abs(s - f.stamp) <= max_skew + 1e-9 for s in f.stamps.values())
        assert f.subset == tuple(m for m in MODALITIES if m in f.data)
    for name in sync.config.modalities:
        per_mod = [f.stamps[name.name] for f in frames if name.name in f.stamps]
        assert all(a <= b for a, b in zip(per_mod, per_mod[1:])), f"{name.name} stamps must not go back"
    for name, st in sync.stats().items():
        assert st.received == st.used + st.dropped + st.duplicates + st.out_of_order + st.buffered, name
        assert st.used == len({f.data[name] for f in frames if name in f.data})


def from_zero(fired):
    """Frames from t = 0 on: sensors start at WARMUP so that by then every one is alive and has a rate."""
    return [(t, f) for t, f in fired if f.stamp > -1e-6]


WARMUP = -0.2  # sensors' start


def _offset(sync, name):
    return next(m.time_offset for m in sync.config.modalities if m.name == name)


def by_stamp(fired):
    return {round(f.stamp, 6): (t, f) for t, f in fired}


# ---------------------------------------------------------------- configuration and input errors

@pytest.mark.parametrize("kwargs, match", [
    (dict(modalities=[]), "at least one"),
    (dict(modalities=[ModalityConfig("sonar")]), "unknown modalities"),
    (dict(modalities=[ModalityConfig("rgb"), ModalityConfig("rgb")]), "repeated"),
    (dict(modalities=[ModalityConfig("rgb", stale_timeout=0)]), "stale_timeout"),
    (dict(modalities=[ModalityConfig("rgb")], max_skew=-0.1), "max_skew"),
    (dict(modalities=[ModalityConfig("rgb")], timeout=float("nan")), "timeout"),
    (dict(modalities=[ModalityConfig("rgb")], buffer_size=0), "buffer_size"),
    (dict(modalities=[ModalityConfig("rgb")], jump_back_tolerance=0), "jump_back_tolerance"),
])
def test_config_is_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyncConfig(**kwargs)


def test_add_rejects_unknown_modality_and_bad_times():
    sync = make_sync(["rgb"])
    with pytest.raises(ValueError, match="unknown modality 'depth'"):
        sync.add("depth", 0.0, None, 0.0)
    with pytest.raises(ValueError, match="stamp"):
        sync.add("rgb", float("nan"), None, 0.0)
    with pytest.raises(ValueError, match="now"):
        sync.poll(float("inf"))
    assert sync.stats()["rgb"].received == 0


# ---------------------------------------------------------------- subsets

@pytest.mark.parametrize("subset", all_subsets(), ids="+".join)
@pytest.mark.parametrize("enabled", ["subset", "all"])
def test_every_subset_gives_one_full_frame_per_reference_message(subset, enabled):
    """Whatever subset publishes (all four enabled or only those), each reference message makes one
    frame with exactly that subset, partners are the nearest messages, released when the last one arrives."""
    names = subset if enabled == "subset" else MODALITIES
    sync = make_sync(names)
    ref, events = subset[0], []
    for i, name in enumerate(subset):  # same rate, per-sensor latency and stamp jitter within the skew
        t0 = 0.0 if name == ref else -0.1  # partners are up before the first reference message
        events += stream(name, 30, t0=t0, latency=0.002 + 0.004 * i, jitter=0.004, seed=i)
    fired = simulate(sync, events)
    check_invariants(sync, fired)
    early = [f for _, f in fired if f.stamp < -0.02]  # before the reference sensor is up, the next one leads
    assert all(f.reference == subset[1] for f in early)
    fired = fired[len(early):]
    ref_stamps = sorted(e[2] for e in events if e[1] == ref)
    assert [f.stamp for _, f in fired] == ref_stamps
    arrivals = {(name, stamp): arrival for arrival, name, stamp in events}
    for t, f in fired:
        assert f.subset == subset
        for name in subset:  # the partner is that sensor's message nearest to the reference stamp
            nearest = min((e[2] for e in events if e[1] == name), key=lambda s: abs(s - f.stamp))
            assert f.data[name] == (name, nearest)
        assert t - max(arrivals[p] for p in f.data.values()) <= TICK + 1e-9, "released when complete"


# ---------------------------------------------------------------- dropouts and rejoins

def test_partner_dying_mid_stream_output_continues_with_smaller_subset():
    sync = make_sync(stale_timeout=0.3, timeout=0.1)
    events = (stream("rgb", 30, t1=2.0, latency=0.01) + stream("depth", 30, WARMUP, 2.0, latency=0.012)
              + stream("event", 30, WARMUP, 2.0, latency=0.005) + stream("lidar", 10, WARMUP, 1.0, latency=0.02))
    fired = simulate(sync, events)
    check_invariants(sync, fired)
    fired = from_zero(fired)
    last_lidar = max(e[0] for e in events if e[1] == "lidar")
    assert len(fired) == len(stream("rgb", 30, t1=2.0)), "every reference message still fires"
    for t, f in fired:
        arrival = f.stamp + 0.01
        assert t - arrival <= sync.config.timeout + TICK, "no frame waits longer than timeout"
        if f.stamp > 1.0 + sync.config.max_skew:
            assert f.subset == ("rgb", "depth", "event")
        elif f.stamp == pytest.approx(round(f.stamp * 10) / 10):
            assert f.subset == MODALITIES, "before it dies, lidar is in every frame at its stamps"
        if arrival > last_lidar + 0.3:  # lidar stale: nothing waits for it any more
            assert t - arrival <= TICK
    first_smaller = min(t for t, f in fired if f.stamp > 1.0 + 0.05)
    assert first_smaller <= last_lidar + 0.3 + 0.1
    assert sync.alive(2.02) == ("rgb", "depth", "event")


def test_reference_dying_hands_over_to_next_priority():
    sync = make_sync(stale_timeout=0.3, timeout=0.1)
    events = (stream("rgb", 30, t1=1.0, latency=0.01) + stream("depth", 30, WARMUP, 2.0, latency=0.012)
              + stream("lidar", 10, WARMUP, 2.0, latency=0.02))
    fired = simulate(sync, events)
    check_invariants(sync, fired)
    fired = from_zero(fired)
    assert all(f.reference == "rgb" for _, f in fired if f.stamp < 1.0 + 1e-6)
    last_rgb = max(e[0] for e in events if e[1] == "rgb")
    after = [(t, f) for t, f in fired if f.stamp > 1.0 + 1e-6]
    assert after and all(f.reference == "depth" and "rgb" not in f.data for _, f in after)
    assert after[0][0] <= last_rgb + 0.3 + 0.1
    # from then on depth frames flow at its rate; nothing of depth after the rgb frames is lost
    depth_stamps = [e[2] for e in events if e[1] == "depth" and e[2] > 1.0 + 1e-6]
    assert [round(f.stamp, 6) for _, f in after] == [round(s, 6) for s in depth_stamps]
    assert max(b[0] - a[0] for a, b in zip(after, after[1:])) <= sync.config.timeout


def test_modality_rejoins_on_its_next_message():
    sync = make_sync(["rgb", "lidar"], stale_timeout=0.3)
    lidar = [e for e in stream("lidar", 10, WARMUP, 3.0, latency=0.005) if not 1.0 < e[2] < 2.0]
    fired = simulate(sync, stream("rgb", 10, WARMUP, 3.0, latency=0.01) + lidar)  # lidar arrives first
    check_invariants(sync, fired)
    frames = by_stamp(from_zero(fired))
    assert len(frames) == 31 and all(f.reference == "rgb" for _, f in frames.values())
    assert all("lidar" in frames[round(s, 6)][1].data for _, _, s in lidar if s > -1e-6)
    assert frames[2.0][1].subset == ("rgb", "lidar")
    assert all(frames[round(k / 10, 6)][1].subset == ("rgb",) for k in range(11, 20))


def test_reference_returning_takes_over_again():
    sync = make_sync(["rgb", "depth"], stale_timeout=0.2)
    rgb = [e for e in stream("rgb", 20, t1=2.0, latency=0.01) if not 0.5 < e[2] < 1.0]
    fired = simulate(sync, rgb + stream("depth", 20, WARMUP, 2.0, latency=0.01))
    check_invariants(sync, fired)
    refs = {round(f.stamp, 6): f.reference for _, f in fired}
    assert refs[0.45] == "rgb" and refs[0.9] == "depth" and refs[1.0] == "rgb" and refs[1.5] == "rgb"


def test_modality_that_never_published_never_blocks():
    sync = make_sync(["rgb", "depth"], timeout=0.1)
    sync.add("rgb", 1.0, "a", now=1.0)
    assert [f.data for f in sync.poll(1.0)] == [{"rgb": "a"}]


# ---------------------------------------------------------------- matching rules

def test_timeout_releases_a_frame_without_the_late_partner():
    sync = make_sync(["rgb", "depth"], timeout=0.1)
    sync.add("depth", 0.9, "d0", now=0.9)
    sync.add("rgb", 1.0, "r1", now=1.0)
    assert sync.poll(1.0) == [] and sync.poll(1.099) == []
    (frame,) = sync.poll(1.1)
    assert frame.subset == ("rgb",) and frame.reference == "rgb"
    sync.add("depth", 1.01, "late", now=1.15)  # missed its reference, still within max_skew of the next
    sync.add("rgb", 1.05, "r2", now=1.16)
    (frame,) = sync.poll(1.16)
    assert frame.data == {"rgb": "r2", "depth": "late"}


def test_partner_newer_than_window_releases_at_once():
    sync = make_sync(["rgb", "depth"], timeout=0.1, max_skew=0.02)
    sync.add("depth", 0.9, "d0", now=0.9)
    sync.add("rgb", 1.0, "r", now=1.0)
    assert sync.poll(1.0) == []  # depth is alive and may still send a match
    sync.add("depth", 1.1, "d1", now=1.01)  # now depth is past the window: no match can come
    assert [f.data for f in sync.poll(1.01)] == [{"rgb": "r"}]


def test_fires_immediately_when_complete_and_picks_the_closest():
    sync = make_sync(["rgb", "depth"], max_skew=0.05)
    sync.add("depth", 0.5, "d-old", now=0.5)
    sync.add("rgb", 0.5, "r-old", now=0.5)
    assert len(sync.poll(0.5)) == 1
    sync.add("depth", 0.96, "d1", now=0.96)
    sync.add("depth", 0.99, "d2", now=0.99)
    sync.add("rgb", 1.0, "r", now=1.0)
    (frame,) = sync.poll(1.0)
    assert frame.data == {"rgb": "r", "depth": "d2"}
    assert sync.stats()["depth"].dropped == 1  # d1 is older than the consumed d2


def test_dead_partner_does_not_block_but_still_matches_if_buffered():
    sync = make_sync(["rgb", "depth"], stale_timeout=0.2, timeout=0.5)
    sync.add("depth", 1.0, "d", now=1.0)
    sync.add("rgb", 1.0, "r", now=1.3)  # depth is stale by now: no wait, but its message is close
    assert [f.data for f in sync.poll(1.3)] == [{"rgb": "r", "depth": "d"}]


def test_mixed_rates_slowest_reference_gets_every_frame_full():
    sync = make_sync(["lidar", "depth", "rgb"])
    events = (stream("rgb", 30, WARMUP, 3.0, latency=0.01) + stream("depth", 20, WARMUP, 3.0, latency=0.015)
              + stream("lidar", 10, WARMUP, 3.0, latency=0.03))
    fired = simulate(sync, events)
    check_invariants(sync, fired)
    fired = from_zero(fired)
    assert len(fired) == 31
    for t, f in fired:
        assert f.subset == ("rgb", "depth", "lidar")
        assert all(abs(s - f.stamp) < 1e-9 for s in f.stamps.values())
        assert t - (f.stamp + 0.03) <= TICK + 1e-9  # released when the last (lidar) arrives


@pytest.mark.parametrize("rgb_latency, lidar_latency", [(0.005, 0.02), (0.02, 0.005)])
def test_mixed_rates_fast_reference_gets_every_partner_nearest_to_each_frame(rgb_latency, lidar_latency):
    """30 Hz reference, 20 and 10 Hz partners: every reference message fires with both partners (each
    within the 50 ms skew of a 10 Hz sweep), each partner the message nearest to it, so the subset never
    flickers; every partner message goes into a frame; no frame waits beyond timeout."""
    sync = make_sync(["rgb", "depth", "lidar"], timeout=0.1)
    events = (stream("rgb", 30, t1=3.0, latency=rgb_latency) + stream("depth", 20, WARMUP, 3.0, latency=0.01)
              + stream("lidar", 10, WARMUP, 3.0, latency=lidar_latency))
    fired = simulate(sync, events)
    check_invariants(sync, fired)
    fired = from_zero(fired)
    rgb = [e[2] for e in events if e[1] == "rgb"]
    assert [f.stamp for _, f in fired] == rgb
    for name in ("depth", "lidar"):
        sent = [e[2] for e in events if e[1] == name]
        for t, f in fired:
            assert f.stamps[name] == min(sent, key=lambda s: abs(s - f.stamp)), f"{name} not the nearest"
        used = {f.stamps[name] for _, f in fired}
        assert used == {s for s in sent if s > -0.05 + 1e-9}  # all from the first frame's window on
    assert all(t - (f.stamp + rgb_latency) <= 0.1 + TICK for t, f in fired)
    # once the rates are known a frame waits for nothing but its own (nearest) partners: released as
    # soon as the last of its messages is in, not at timeout
    arrivals = {(name, stamp): arrival for arrival, name, stamp in events}
    late = [t - max(arrivals[p] for p in f.data.values()) for t, f in fired if f.stamp > 0.5]
    assert max(late) <= TICK + 1e-9


def test_time_offsets_align_stamps():
    """Depth stamps 50 ms early (exposure start) at 10 Hz: its +0.05 offset makes them match; without, none do."""
    events = (stream("rgb", 10, t1=2.0, latency=0.01)
              + stream("depth", 10, WARMUP, 2.0, latency=0.01, stamp_shift=-0.05))
    fired = from_zero(simulate(make_sync(["rgb", "depth"], offsets={"depth": 0.05}, max_skew=0.02), events))
    assert len(fired) == 21 and all(f.subset == ("rgb", "depth") for _, f in fired)
    for _, f in fired:
        assert f.stamps["depth"] == pytest.approx(f.stamp, abs=1e-9)
        assert f.data["depth"][1] == pytest.approx(f.stamp - 0.05, abs=1e-9)
    plain = make_sync(["rgb", "depth"], max_skew=0.02)
    fired = simulate(plain, events)
    check_invariants(plain, fired)
    fired = from_zero(fired)
    assert len(fired) == 21 and all(f.subset == ("rgb",) for _, f in fired)
    assert all(t - f.stamp <= plain.config.timeout + 0.01 + TICK for t, f in fired)


# ---------------------------------------------------------------- bad stamps

def test_duplicate_stamps_keep_the_first_and_are_counted():
    sync = make_sync(["rgb", "depth"])
    sync.add("depth", 1.0, "first", now=1.0)
    sync.add("depth", 1.0, "second", now=1.001)
    sync.add("rgb", 1.0, "r", now=1.002)
    sync.add("rgb", 1.0, "r-again", now=1.003)
    (frame,) = sync.poll(1.003)
    assert frame.data == {"rgb": "r", "depth": "first"}
    sync.add("depth", 1.0, "after-use", now=1.01)  # a repeat of an already consumed stamp
    assert sync.poll(1.2) == []
    st = sync.stats()
    assert (st["depth"].duplicates, st["rgb"].duplicates) == (2, 1)


def test_frozen_sensor_repeating_a_stamp_goes_stale():
    sync = make_sync(["rgb", "depth"], stale_timeout=0.2)
    sync.add("depth", 1.0, "d", now=1.0)
    for k in range(1, 10):
        sync.add("depth", 1.0, "d", now=1.0 + 0.05 * k)
    assert sync.alive(1.45) == ()
    stats = sync.stats()["depth"]
    assert (stats.last_arrival, stats.last_refused) == (1.0, 1.45), "still arriving, refused: the node says why"


def test_out_of_order_stamps():
    sync = make_sync(["rgb", "depth"])
    # arriving swapped but before use: sorted in, both used by the right frames
    sync.add("depth", 1.05, "d2", now=1.05)
    sync.add("depth", 1.0, "d1", now=1.051)
    sync.add("rgb", 1.0, "r1", now=1.052)
    sync.add("rgb", 1.05, "r2", now=1.053)
    assert [f.data["depth"] for f in sync.poll(1.053)] == ["d1", "d2"]
    # older than the last consumed depth: dropped and counted, never in a frame
    sync.add("depth", 1.02, "stale", now=1.06)
    sync.add("rgb", 1.1, "r3", now=1.1)
    sync.add("depth", 1.1, "d3", now=1.1)
    (frame,) = sync.poll(1.1)
    assert frame.data == {"rgb": "r3", "depth": "d3"}
    assert sync.stats()["depth"].out_of_order == 1
    assert sync.stats()["depth"].last_refused == 1.06 and sync.stats()["rgb"].last_refused is None


def test_message_older_than_the_last_frame_window_is_dropped_but_counts_as_alive():
    sync = make_sync(["rgb", "depth", "lidar"], stale_timeout=5.0)
    sync.add("lidar", 1.9, "left-behind", now=1.9)
    sync.add("rgb", 2.0, "r", now=2.0)
    sync.add("depth", 2.0, "d", now=2.0)
    (frame,) = sync.poll(2.1)  # lidar is alive but had nothing close: released by the timeout
    assert frame.subset == ("rgb", "depth")
    assert (sync.stats()["lidar"].dropped, sync.stats()["lidar"].buffered) == (1, 0)
    sync.add("lidar", 1.93, "too-old", now=2.15)  # never consumed lidar, but older than 2.0 - max_skew
    sync.add("depth", 1.99, "superseded", now=2.16)  # older than depth's consumed 2.0
    st = sync.stats()
    assert (st["lidar"].dropped, st["lidar"].buffered, st["depth"].out_of_order) == (2, 0, 1)
    assert sync.alive(2.16) == ("rgb", "depth", "lidar")


@pytest.mark.parametrize("bad_stamp", [lambda t: 0.0, lambda t: t - 30.0])   # unstamped; a device clock
def test_a_sensor_stamping_in_another_clock_goes_stale_instead_of_delaying_every_frame(bad_stamp):
    sync = make_sync(["rgb", "depth"], stale_timeout=0.3)   # timeout 0.1
    fired = []
    for k in range(40):
        t = 1.0 + 0.1 * k
        sync.add("rgb", t, f"r{k}", now=t + 0.002)
        sync.add("depth", bad_stamp(t), f"d{k}", now=t + 0.003)
        fired += [(f, t + 0.003) for f in sync.poll(t + 0.003)]
    late = [f for f, polled in fired[-20:] if polled - f.stamp > 0.05]
    assert len(fired) >= 39 and all(f.subset == ("rgb",) for f, _ in fired[-20:])
    assert late == [], "depth is not alive, so no frame waits `timeout` for it"
    assert sync.alive(4.904) == ("rgb",)
    stats = sync.stats()["depth"]
    assert stats.last_refused == pytest.approx(4.903) and stats.lag == pytest.approx(4.903 - bad_stamp(4.9))
    assert sync.refusing(4.904) == ("depth",) and sync.refusing(4.903 + 0.31) == ()
    assert stats.received == stats.used + stats.dropped + stats.duplicates + stats.out_of_order + stats.buffered


def test_a_sensor_stamping_ahead_is_reported_unmatched_and_delays_nothing():
    """Stamps 2 s ahead (another clock, a wrong time_offset): such a sensor stays alive but matches no
    frame; frames do not wait for it, and unmatched() names it once it has been in none for 1 s."""
    sync = make_sync(["rgb", "depth", "lidar"], stale_timeout=0.3)
    fired = []
    for k in range(30):
        t = 1.0 + 0.1 * k
        sync.add("rgb", t, f"r{k}", now=t + 0.002)
        sync.add("depth", t + 2.0, f"d{k}", now=t + 0.003)
        sync.add("lidar", t, f"l{k}", now=t + 0.004)
        fired += [(f, t + 0.004) for f in sync.poll(t + 0.004)]
        if k == 5:
            assert sync.unmatched(t + 0.004) == {}, "alive for only 0.5 s: too early to tell"
    assert all(f.subset == ("rgb", "lidar") and polled - f.stamp < 0.01 for f, polled in fired[-20:])
    assert sync.alive(3.904) == ("rgb", "depth", "lidar")
    assert set(sync.unmatched(3.904)) == {"depth"} and sync.unmatched(3.904)["depth"] == pytest.approx(2.901)
    sync.config = make_sync(["rgb", "depth", "lidar"], stale_timeout=0.3, offsets={"depth": -2.0}).config
    for k in range(30, 35):
        t = 1.0 + 0.1 * k
        for name, stamp, lag in (("rgb", t, 0.002), ("depth", t + 2.0, 0.003), ("lidar", t, 0.004)):
            sync.add(name, stamp, f"{name}{k}", now=t + lag)
        fired += [(f, t + 0.004) for f in sync.poll(t + 0.004)]
    assert fired[-1][0].subset == ("rgb", "depth", "lidar") and sync.unmatched(4.404) == {}, "fixed by time_offset"


def test_a_lower_priority_sensor_ahead_in_time_cannot_lock_the_reference_out():
    """Depth, 2 s ahead, comes up first and fires frames as the reference. RGB (right clock, higher
    priority) must still take over at once: its stamps are older than those frames, but it is not
    judged by a lower-priority reference's frames. Then depth is the one reported unmatched."""
    sync = make_sync(["rgb", "depth"], stale_timeout=0.3)
    fired = []
    for k in range(30):
        t = 1.0 + 0.1 * k
        if k >= 5:
            sync.add("rgb", t, f"r{k}", now=t + 0.002)
        sync.add("depth", t + 2.0, f"d{k}", now=t + 0.003)
        fired += [(f, t + 0.003) for f in sync.poll(t + 0.003)]
    assert [f.reference for f, _ in fired[:5]] == ["depth"] * 5
    from_rgb = [(f, polled) for f, polled in fired if f.reference == "rgb"]
    assert from_rgb and from_rgb[0][1] < 1.5 + 0.11, "RGB's first frame within a period of its first message"
    assert len(from_rgb) >= 24 and sync.stats()["rgb"].last_refused is None
    assert set(sync.unmatched(3.903)) == {"depth"}


def test_a_late_sensor_within_timeout_stays_alive_and_matched():
    """60 ms later than its reference, beyond max_skew but within timeout: frames wait for it."""
    sync = make_sync(["rgb", "lidar"], stale_timeout=0.3)
    fired = []
    for k in range(30):
        t = 1.0 + 0.1 * k
        sync.add("rgb", t, f"r{k}", now=t + 0.002)
        fired += sync.poll(t + 0.002)
        sync.add("lidar", t, f"l{k}", now=t + 0.06)
        fired += sync.poll(t + 0.06)
    assert all(f.subset == ("rgb", "lidar") for f in fired[-20:])
    assert sync.stats()["lidar"].last_refused is None


def test_buffer_overflow_drops_oldest():
    sync = make_sync(["rgb", "depth"], buffer_size=3, stale_timeout=5.0)
    for k in range(6):
        sync.add("depth", 1.0 + 0.01 * k, k, now=1.0 + 0.01 * k)
    st = sync.stats()["depth"]
    assert (st.buffered, st.dropped) == (3, 3)
    sync.add("rgb", 1.05, "r", now=1.06)
    (frame,) = sync.poll(1.06)
    assert frame.data["depth"] == 5


def test_backwards_clock_jump_resets_like_a_bag_loop():
    """Bag evaluator style: now = stamp, the bag plays twice; the loop resets, never mixes the two passes."""
    sync = make_sync()
    one_pass = []  # partners were recording a little before the camera
    for name, rate, t0 in (("rgb", 30, 100.0), ("depth", 30, 99.9), ("event", 30, 99.9), ("lidar", 10, 99.9)):
        one_pass += [(s, n, s) for _, n, s in stream(name, rate, t0=t0, t1=102.0)]
    one_pass.sort(key=lambda e: (e[0], MODALITIES.index(e[1])))
    fired = []
    for loop in range(2):
        for now, name, stamp in one_pass:
            sync.add(name, stamp, (loop, name, stamp), now)
            fired += sync.poll(now)
    fired += sync.flush()
    assert sync.resets == 1
    passes = [[f for f in fired if {p[0] for p in f.data.values()} == {loop}] for loop in range(2)]
    assert len(passes[0]) + len(passes[1]) == len(fired), "a frame mixed the two passes"
    for frames in passes:
        assert all(a.stamp < b.stamp for a, b in zip(frames, frames[1:]))
        led_by_rgb = [f for f in frames if f.reference == "rgb"]
        assert len(led_by_rgb) == 61 and led_by_rgb[0].stamp == 100.0
        assert all(f.subset == MODALITIES for f in led_by_rgb)  # a lidar sweep within 33 ms of each
    # liveness survives the loop: the camera still leads and waits for the others from the first stamp
    assert passes[0][0].reference == "depth"
    assert (passes[1][0].reference, passes[1][0].stamp, passes[1][0].subset) == ("rgb", 100.0, MODALITIES)
    st = sync.stats()
    assert st["rgb"].received == 122 and st["rgb"].used == 122 and st["rgb"].dropped == 0


def test_one_modality_stamp_jump_back_resets_buffers():
    sync = make_sync(["rgb", "depth"])
    sync.add("rgb", 50.0, "r", now=10.0)
    sync.add("depth", 50.0, "d", now=10.0)
    sync.poll(10.0)
    sync.add("depth", 50.01, "pending", now=10.01)
    sync.add("depth", 3.0, "restarted", now=10.02)  # its clock restarted: not "out of order"
    sync.add("rgb", 3.0, "r2", now=10.03)
    (frame,) = sync.poll(10.03)
    assert frame.data == {"rgb": "r2", "depth": "restarted"}
    st = sync.stats()["depth"]
    assert sync.resets == 1 and st.out_of_order == 0 and st.dropped == 1


def test_small_backwards_step_of_now_is_not_a_reset():
    sync = make_sync(["rgb"])
    sync.add("rgb", 1.0, "a", now=1.0)
    sync.poll(0.9)
    assert sync.resets == 0 and sync.alive(0.9) == ("rgb",)


# ---------------------------------------------------------------- robustness and API

def test_messy_streams_keep_every_invariant_and_are_deterministic():
    def messy(seed):
        rng = random.Random(seed)
        events = []
        for i, (name, rate) in enumerate((("rgb", 30), ("depth", 15), ("event", 60), ("lidar", 10))):
            for arrival, n, stamp in stream(name, rate, t1=4.0, latency=0.01 * i, jitter=0.01, seed=seed + i):
                r = rng.random()
                if r < 0.1:
                    continue  # lost
                events.append((arrival, n, stamp))
                if r > 0.95:
                    events.append((arrival + 0.001, n, stamp))  # duplicate
                if 0.9 < r < 0.95:
                    events.append((arrival + rng.uniform(0, 0.2), n, stamp - rng.uniform(0, 0.1)))  # late, out of order
        outage = [e for e in events if not (e[1] == "rgb" and 1.5 < e[0] < 2.5)]
        sync = make_sync(stale_timeout=0.3, buffer_size=6)
        return sync, simulate(sync, outage)

    sync, fired = messy(7)
    check_invariants(sync, fired)
    assert {f.reference for _, f in fired} >= {"rgb", "depth"}
    st = sync.stats()
    assert st["rgb"].duplicates > 0 and st["rgb"].out_of_order + st["rgb"].dropped > 0
    _, again = messy(7)
    assert [(t, f.stamp, f.data) for t, f in fired] == [(t, f.stamp, f.data) for t, f in again]


def test_stats_age_reference_and_reset():
    sync = make_sync(["rgb", "depth"])
    assert sync.reference(0.0) is None and sync.age("rgb", 0.0) is None
    for k in range(5):
        sync.add("depth", k * 0.1, k, now=k * 0.1)
    assert sync.reference(0.45) == "depth" and sync.age("depth", 0.45) == pytest.approx(0.05)
    assert sync.stats()["depth"].rate_hz == pytest.approx(10.0)
    snapshot = sync.stats()["depth"]
    snapshot.received = -1
    assert sync.stats()["depth"].received == 5, "stats() must be a copy"
    sync.reset()
    assert sync.alive(0.45) == () and sync.stats()["depth"].buffered == 0
    assert sync.stats()["depth"].received == 5


def test_flush_releases_waiting_frames():
    sync = make_sync(["rgb", "depth"], timeout=10.0)
    sync.add("depth", 0.9, "d", now=0.9)
    sync.add("rgb", 1.0, "r", now=1.0)
    assert sync.poll(1.0) == []
    assert [f.data for f in sync.flush()] == [{"rgb": "r"}]


def test_config_can_change_at_run_time():
    sync = make_sync(["rgb", "depth"], stale_timeout=0.5)
    sync.add("depth", 1.0, "d1", now=1.0)
    sync.add("rgb", 1.0, "r1", now=1.0)
    assert len(sync.poll(1.0)) == 1
    sync.add("depth", 1.1, "d2", now=1.1)
    sync.config = SyncConfig([ModalityConfig("depth", stale_timeout=0.05), ModalityConfig("rgb"),
                              ModalityConfig("lidar")], max_skew=0.01)
    assert sync.stats()["depth"].buffered == 1 and sync.stats()["depth"].received == 2  # kept
    assert sync.reference(1.1) == "depth"  # new priority
    assert sync.alive(1.2) == ("rgb",)  # new stale_timeout
    sync.add("lidar", 1.2, "l", now=1.2)  # newly enabled
    sync.config = SyncConfig([ModalityConfig("rgb"), ModalityConfig("lidar", time_offset=0.5)])
    assert sync.stats()["lidar"].buffered == 0 and sync.stats()["lidar"].dropped == 1
    with pytest.raises(ValueError, match="unknown modality 'depth'"):
        sync.add("depth", 1.3, "d3", now=1.3)
