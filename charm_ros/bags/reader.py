"""Reading a rosbag2 (sqlite3 or mcap, any publisher's types) in header-stamp order with bounded memory."""
from __future__ import annotations

import heapq
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

from charm_ros.msgs import fields


def stamp_ns(msg: Any) -> int:
    """Header stamp of a message (or SensorSample) in integer nanoseconds."""
    return fields.stamp_to_ns(msg.header.stamp)


def count_messages(bag: Path, topics: set[str]) -> int | None:
    """Messages of `topics` in the bag, from its metadata (None where the storage does not record counts):
    the progress bar's total, since the frames a bag will give are only known once it is replayed."""
    with AnyReader([bag], default_typestore=get_typestore(Stores.LATEST)) as reader:
        total = sum(c.msgcount for c in reader.connections if c.topic in topics)
    return total or None


def read_in_stamp_order(bag: Path, topics: set[str], window_s: float = 1.0, counts: Counter | None = None,
                        undecodable: Counter | None = None) -> Iterator[tuple[str, Any, int, int]]:
    """Yield (topic, message, replay time ns, receive time ns) of `topics` in replay-time order.

    The replay time is the header stamp. Bags are stored in receive order; a heap releases a message
    once the receive time is `window_s` past its replay time, so memory stays bounded. A message
    stamped more than `window_s` after it was received (a clock running ahead: a wrong time zone, an
    unsynchronized computer) replays at its receive time + `window_s` instead: ordered by its stamp,
    it would hold the rest of the bag in memory and move the replay clock into its future."""
    heap: list[tuple[int, int, str, Any, int]] = []
    seq = 0
    window = int(window_s * 1e9)
    typestore = get_typestore(Stores.LATEST)
    with AnyReader([bag], default_typestore=typestore) as reader:
        wanted = [c for c in reader.connections if c.topic in topics]
        for connection, log_time, raw in reader.messages(connections=wanted):
            if counts is not None:
                counts[connection.topic] += 1
            try:
                msg = reader.deserialize(raw, connection.msgtype)
                key = min(stamp_ns(msg), log_time + window)
            except Exception:  # a foreign or corrupt message: counted, never fatal
                if undecodable is not None:
                    undecodable[connection.topic] += 1
                continue
            heapq.heappush(heap, (key, seq, connection.topic, msg, log_time))
            seq += 1
            while heap and heap[0][0] < log_time - window:
                key, _, topic, msg, received = heapq.heappop(heap)
                yield topic, msg, key, received
    while heap:
        key, _, topic, msg, received = heapq.heappop(heap)
        yield topic, msg, key, received
