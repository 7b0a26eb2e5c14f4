"""Modality names, their canonical order, and subset naming shared by model, data, node and reports."""
from __future__ import annotations

from itertools import combinations
from typing import Iterable

# Canonical order (DELIVER's R, D, E, L). Availability masks and subset names follow it.
MODALITIES: tuple[str, ...] = ("rgb", "depth", "event", "lidar")


def canonical(modalities: Iterable[str]) -> tuple[str, ...]:
    """Sort modality names into canonical order; unknown or repeated names are an error."""
    names = list(modalities)
    unknown = sorted(set(names) - set(MODALITIES))
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; expected a subset of {list(MODALITIES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"repeated modality in {names}")
    return tuple(m for m in MODALITIES if m in names)


def subset_name(modalities: Iterable[str]) -> str:
    """'rgb+lidar' style name in canonical order (the key used in reports and on ~/subset)."""
    return "+".join(canonical(modalities))


def all_subsets(modalities: Iterable[str] = MODALITIES) -> list[tuple[str, ...]]:
    """Every non-empty subset (15 for four modalities), by size then canonical order."""
    mods = canonical(modalities)
    return [c for k in range(1, len(mods) + 1) for c in combinations(mods, k)]
