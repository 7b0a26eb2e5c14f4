"""Scripted sensor dropouts, e.g. "depth:5-10,rgb:12-20,all:30-32" (seconds from start, half-open).

Shared by the synthetic sensor rig (which stops publishing), the bag evaluator's `--drop` (which
skips recorded messages) and the demo report (which names the phases), so all three agree.
"""
from __future__ import annotations

from dataclasses import dataclass

from charm_core.modalities import MODALITIES, subset_name


@dataclass(frozen=True)
class Dropout:
    modality: str
    start: float
    end: float

    def covers(self, t: float) -> bool:
        return self.start <= t < self.end


def parse_dropouts(text: str) -> list[Dropout]:
    """Parse 'mod:start-end,...'; `all` expands to every modality. Empty text = no dropouts."""
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
        names = MODALITIES if name.strip() == "all" else (name.strip(),)
        for n in names:
            if n not in MODALITIES:
                raise ValueError(f"dropout {item!r}: unknown modality {n!r} (one of {', '.join(MODALITIES)}, all)")
            out.append(Dropout(n, start, end))
    return out


def dropped_at(dropouts: list[Dropout], t: float) -> set[str]:
    return {d.modality for d in dropouts if d.covers(t)}


@dataclass(frozen=True)
class Phase:
    start: float
    end: float
    live: tuple[str, ...]   # modalities the rig publishes during the phase (canonical order)

    @property
    def name(self) -> str:
        return subset_name(self.live) if self.live else "none"


def phases(dropouts: list[Dropout], duration: float, modalities: tuple[str, ...] = MODALITIES) -> list[Phase]:
    """Split [0, duration) at every dropout boundary into phases with a constant set of live sensors."""
    cuts = sorted({0.0, duration, *(t for d in dropouts for t in (d.start, d.end) if 0 < t < duration)})
    result: list[Phase] = []
    for start, end in zip(cuts, cuts[1:]):
        gone = dropped_at(dropouts, start)
        live = tuple(m for m in modalities if m not in gone)
        if result and result[-1].live == live:
            result[-1] = Phase(result[-1].start, end, live)
        else:
            result.append(Phase(start, end, live))
    return result
