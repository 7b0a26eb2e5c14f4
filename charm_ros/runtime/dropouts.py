"""Scripted sensor dropouts, e.g. "depth:5-10,rgb:12-20,all:30-32" (seconds from start, half-open).

Shared by the synthetic sensor rig (which stops publishing), the bag evaluator's `--drop` (which
skips recorded messages) and the demo report (which names the phases, content faults included), so
all three agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from charm_core.modalities import MODALITIES
from charm_ros.runtime.faults import Fault, faulted_at


@dataclass(frozen=True)
class Dropout:
    modality: str
    start: float
    end: float

    def covers(self, t: float) -> bool:
        return self.start <= t < self.end


def modality_list(text: str) -> tuple[str, ...]:
    """'rgb, depth,thermal' -> ('rgb', 'depth', 'thermal'): the tools' `modalities` parameters."""
    return tuple(m.strip() for m in text.split(",") if m.strip())


def parse_dropouts(text: str, modalities: Iterable[str] = MODALITIES) -> list[Dropout]:
    """Parse 'mod:start-end,...' for sensors among `modalities`; `all` expands to every one of them.
    Empty text = no dropouts."""
    modalities = tuple(modalities)
    out: list[Dropout] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, span = item.partition(":")
        start_text, dash, end_text = span.partition("-")
        if not sep or not dash:
            raise ValueError(f"dropout {item!r} is not 'modality:start-end'")
        try:
            start, end = float(start_text), float(end_text)
        except ValueError:
            raise ValueError(f"dropout {item!r}: start and end must be seconds") from None
        if not 0 <= start < end:
            raise ValueError(f"dropout {item!r}: need 0 <= start < end")
        names = modalities if name.strip() == "all" else (name.strip(),)
        for n in names:
            if n not in modalities:
                raise ValueError(f"dropout {item!r}: unknown modality {n!r} (one of {', '.join(modalities)}, all)")
            out.append(Dropout(n, start, end))
    return out


def dropped_at(dropouts: list[Dropout], t: float) -> set[str]:
    return {d.modality for d in dropouts if d.covers(t)}


@dataclass(frozen=True)
class Phase:
    start: float
    end: float
    live: tuple[str, ...]   # modalities the rig publishes during the phase (in the order phases() was given)
    faults: tuple[str, ...] = ()   # content faults of live sensors during the phase ("depth:frozen")

    @property
    def name(self) -> str:
        """As the node names its subset (~/subset) when `live` is in the model's order."""
        return "+".join(self.live) if self.live else "none"

    @property
    def expected(self) -> str:
        """The subset without the faulted sensors: what the node should use if it catches the faults."""
        faulted = {f.split(":")[0] for f in self.faults}
        return "+".join(m for m in self.live if m not in faulted) or "none"

    @property
    def label(self) -> str:
        """The live sensors, then the faults: 'rgb+depth+event+lidar, depth frozen'."""
        return ", ".join([self.name, *(f.replace(":", " ") for f in self.faults)])


def phases(dropouts: list[Dropout], duration: float, modalities: tuple[str, ...] = MODALITIES,
           faults: Iterable[Fault] = ()) -> list[Phase]:
    """Split [0, duration) at every dropout and fault boundary into phases with a constant set of live
    sensors and faults (`modalities`: the rig's, in the model's order)."""
    faults = list(faults)
    edges = [t for d in (*dropouts, *faults) for t in (d.start, d.end) if 0 < t < duration]
    cuts = sorted({0.0, duration, *edges})
    result: list[Phase] = []
    for start, end in zip(cuts, cuts[1:]):
        gone = dropped_at(dropouts, start)
        live = tuple(m for m in modalities if m not in gone)
        faulted = tuple(f.name for m, f in sorted(faulted_at(faults, start).items(),
                                                   key=lambda item: modalities.index(item[0])) if m in live)
        if result and (result[-1].live, result[-1].faults) == (live, faulted):
            result[-1] = Phase(result[-1].start, end, live, faulted)
        else:
            result.append(Phase(start, end, live, faulted))
    return result
