"""Modalities: a name plus a kind. The kind decides how a sensor becomes a 3-channel network input
(DESIGN.md §4); the model's ordered list of names decides availability masks, subset names and reports.

Kinds:
- color: 3-channel camera; /255 (or /65535 for 16-bit files), then ImageNet mean/std.
- depth: metric depth as the HHA-like 3-channel image of `charm_core.encoders.depth`.
- lidar: the sparse image-plane raster of `charm_core.encoders.lidar`.
- event: the event frame of `charm_core.encoders.event`.
- intensity: a single-channel camera (thermal/LWIR, NIR, DoLP). A stored value x is first turned into
  physical units, x * scale + offset (scale None: full scale of the stored integer type is 1.0, a
  float array is taken as is), then into [0, 1] by a fixed `range` [lo, hi] (clipped) or, with
  `percentiles` [p_lo, p_hi], by that robust range of each image; replicated to 3 channels.
- angle: an angle image in radians (AoLP) as channels [(sin + 1) / 2, (cos + 1) / 2, (sin + 1) / 2],
  MCubeS's [sin, cos, sin] layout mapped to [0, 1]; `scale`/`offset` turn stored values into radians.

Built in: rgb, depth, event, lidar (DELIVER's four, unchanged), thermal (16-bit centi-Kelvin, 250-330 K
-> [0, 1]), nir and dolp (full scale -> [0, 1]) and aolp (16-bit, 0..65535 -> 0..pi). Any other name is
configuration: a spec such as {name: nir2, kind: intensity, range: [0, 1]} in a recipe's `modalities`
list (or in `modality_specs`); ModelConfig stores the spec of every modality, so checkpoints carry
their normalisation.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from itertools import combinations
from typing import Any, Iterable, Mapping

KINDS: tuple[str, ...] = ("color", "depth", "lidar", "event", "intensity", "angle")
SPARSE_KINDS = frozenset({"event", "lidar"})  # interpolating would invent events / LiDAR returns
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")      # a folder name, a ROS parameter prefix, joined by "+"


@dataclass(frozen=True)
class ModalitySpec:
    """One modality: its name, kind and (intensity / angle) how stored values become network values."""

    name: str
    kind: str
    range: tuple[float, float] | None = None        # intensity: physical [lo, hi] -> [0, 1]
    percentiles: tuple[float, float] | None = None  # intensity: per-image robust range instead of `range`
    scale: float | None = None                       # stored value -> physical units: x * scale + offset
    offset: float = 0.0
    unit: str = ""                                   # physical unit after scale/offset ("K", "rad")

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"modality name {self.name!r}: use lower-case letters, digits and _ (e.g. nir2)")
        if self.kind not in KINDS:
            raise ValueError(f"modality {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        for key in ("range", "percentiles"):
            value = getattr(self, key)
            if value is not None:
                value = tuple(float(v) for v in value)
                if len(value) != 2 or not all(math.isfinite(v) for v in value) or not value[0] < value[1]:
                    raise ValueError(f"modality {self.name!r}: {key} must be [low, high] with low < high, got {value}")
                object.__setattr__(self, key, value)
        if self.scale is not None:
            object.__setattr__(self, "scale", float(self.scale))
            if not math.isfinite(self.scale) or self.scale == 0:
                raise ValueError(f"modality {self.name!r}: scale must be a non-zero number, got {self.scale}")
        object.__setattr__(self, "offset", float(self.offset))
        if self.kind == "intensity":
            if (self.range is None) == (self.percentiles is None):
                raise ValueError(f"modality {self.name!r} (intensity): give exactly one of range [lo, hi] "
                                 f"(fixed, physical units) or percentiles [p_lo, p_hi] (robust, per image)")
            if self.percentiles is not None and not 0 <= self.percentiles[0] < self.percentiles[1] <= 100:
                raise ValueError(f"modality {self.name!r}: percentiles must lie in [0, 100], got {self.percentiles}")
        elif self.range is not None or self.percentiles is not None:
            raise ValueError(f"modality {self.name!r}: range / percentiles apply to kind intensity, not {self.kind}")
        if self.kind not in ("intensity", "angle") and (self.scale is not None or self.offset != 0.0):
            raise ValueError(f"modality {self.name!r}: scale / offset apply to kinds intensity and angle, "
                             f"not {self.kind}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields other than the name; fields at their defaults are left out."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in ("name", "kind") and value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, name: str, d: Mapping[str, Any]) -> ModalitySpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"modality {name!r}: unknown spec keys {unknown}; known: {sorted(known - {'name'})}")
        if "kind" not in d:
            raise ValueError(f"modality {name!r}: a spec needs a kind (one of {KINDS})")
        if d.get("name", name) != name:
            raise ValueError(f"modality spec named {d['name']!r} given for {name!r}")
        return cls(**{**d, "name": name})


BUILTIN: dict[str, ModalitySpec] = {s.name: s for s in (
    ModalitySpec("rgb", "color"),
    ModalitySpec("depth", "depth"),
    ModalitySpec("event", "event"),
    ModalitySpec("lidar", "lidar"),
    ModalitySpec("thermal", "intensity", range=(250.0, 330.0), scale=0.01, unit="K"),
    ModalitySpec("nir", "intensity", range=(0.0, 1.0)),
    ModalitySpec("dolp", "intensity", range=(0.0, 1.0)),
    ModalitySpec("aolp", "angle", scale=math.pi / 65535, unit="rad"),
)}

# DELIVER's four in its order (R, D, E, L): the default modality list of configs, recipes and tools.
DELIVER_MODALITIES: tuple[str, ...] = ("rgb", "depth", "event", "lidar")
MODALITIES = DELIVER_MODALITIES  # the older name, still used by charm_ros

ModalityEntry = str | Mapping[str, Any] | ModalitySpec


def resolve_modalities(entries: Iterable[ModalityEntry],
                       specs: Mapping[str, Mapping[str, Any] | ModalitySpec] | None = None,
                       defaults: Mapping[str, ModalitySpec] | None = None) -> tuple[ModalitySpec, ...]:
    """Ordered specs for `entries` (names, {name, kind, ...} mappings or specs).

    A name's spec comes from, first to last: `specs` (the configuration), `defaults` (what a dataset
    stores under that name, e.g. MFNet's 8-bit thermal) and BUILTIN. A spec given for a built-in
    name must keep its kind; a spec in `specs` for a name not listed is an error (a typo).
    """
    specs = dict(specs or {})
    defaults = dict(defaults or {})
    out: list[ModalitySpec] = []
    for entry in entries:
        if isinstance(entry, ModalitySpec):
            spec = entry
        elif isinstance(entry, Mapping):
            if "name" not in entry:
                raise ValueError(f"modality entry {dict(entry)} has no name")
            spec = ModalitySpec.from_dict(entry["name"], entry)
        elif isinstance(entry, str):
            given = specs.get(entry)
            if isinstance(given, ModalitySpec):
                spec = given
            elif given is not None:
                spec = ModalitySpec.from_dict(entry, given)
            elif entry in defaults:
                spec = defaults[entry]
            elif entry in BUILTIN:
                spec = BUILTIN[entry]
            else:
                raise ValueError(f"unknown modalities [{entry!r}]: built in are {list(BUILTIN)}; define others "
                                 f"by configuration, e.g. {{name: {entry}, kind: intensity, range: [0, 1]}}")
        else:
            raise ValueError(f"modality entry {entry!r}: expected a name or a {{name, kind, ...}} mapping")
        if spec.name in BUILTIN and spec.kind != BUILTIN[spec.name].kind:
            raise ValueError(f"modality {spec.name!r} is built in as kind {BUILTIN[spec.name].kind}, "
                             f"not {spec.kind}; give a new modality a name of its own")
        out.append(spec)
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ValueError(f"repeated modality in {names}")
    stray = sorted(set(specs) - set(names))
    if stray:
        raise ValueError(f"modality_specs for {stray}, which are not among the modalities {names}")
    return tuple(out)


def specs_by_name(specs: Iterable[ModalitySpec]) -> dict[str, ModalitySpec]:
    return {s.name: s for s in specs}


def canonical(modalities: Iterable[str], order: Iterable[str] = DELIVER_MODALITIES) -> tuple[str, ...]:
    """Sort modality names into `order` (a model's list; DELIVER's four by default); names outside
    it or repeated are an error."""
    order = tuple(order)
    names = list(modalities)
    unknown = sorted(set(names) - set(order))
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; expected a subset of {list(order)}")
    if len(set(names)) != len(names):
        raise ValueError(f"repeated modality in {names}")
    return tuple(m for m in order if m in names)


def subset_name(modalities: Iterable[str], order: Iterable[str] = DELIVER_MODALITIES) -> str:
    """'rgb+lidar' style name in the model's order (the key used in reports and on ~/subset)."""
    return "+".join(canonical(modalities, order))


def all_subsets(order: Iterable[str] = DELIVER_MODALITIES) -> list[tuple[str, ...]]:
    """Every non-empty subset of a model's modalities (2^N - 1), by size, then in the model's order."""
    mods = tuple(order)
    if len(set(mods)) != len(mods):
        raise ValueError(f"repeated modality in {list(mods)}")
    return [c for k in range(1, len(mods) + 1) for c in combinations(mods, k)]
