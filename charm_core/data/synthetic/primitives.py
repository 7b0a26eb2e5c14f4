"""The scene's geometry as flat arrays of simple solids, so ray casting can be vectorized over them.

Every solid is described by its axis-aligned bounding box (lo, hi) in world coordinates (x along the
street, y left, z up) and a kind: a box, a vertical cylinder inscribed in the box, an ellipsoid
inscribed in the box, or a fence (a thin box whose surface has see-through gaps between bars).
Moving solids slide along x with `velocity`; limbs and pedals also oscillate by `swing`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np

BOX, CYLINDER, ELLIPSOID, FENCE = 0, 1, 2, 3

# Walking / pedalling cadence (rad/s) shared by every swinging limb.
SWING_RATE = 2 * np.pi * 0.9


@dataclass
class Primitives:
    """Struct of arrays, one row per solid."""

    kind: np.ndarray       # (P,) int8
    lo: np.ndarray         # (P, 3) float64 AABB minimum at t = 0
    hi: np.ndarray         # (P, 3) float64 AABB maximum at t = 0
    cls: np.ndarray        # (P,) uint8 DELIVER train id
    material: np.ndarray   # (P,) uint8, see materials.py
    color: np.ndarray      # (P, 3) float32 linear albedo
    variant: np.ndarray    # (P,) float32 in [0, 1): per-object texture / pattern variation
    velocity: np.ndarray   # (P,) float64 m/s along x
    swing: np.ndarray      # (P,) float64 amplitude (m, along x) of the periodic limb motion
    phase: np.ndarray      # (P,) float64 rad

    def __len__(self) -> int:
        return len(self.kind)

    @classmethod
    def empty(cls) -> Primitives:
        return cls(np.zeros(0, np.int8), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, np.uint8),
                   np.zeros(0, np.uint8), np.zeros((0, 3), np.float32), np.zeros(0, np.float32),
                   np.zeros(0), np.zeros(0), np.zeros(0))

    @classmethod
    def concat(cls, parts: list[Primitives]) -> Primitives:
        return _concat(cls, parts)

    def select(self, mask: np.ndarray) -> Primitives:
        return Primitives(*(getattr(self, f.name)[mask] for f in fields(self)))

    def at_time(self, t: float) -> Primitives:
        """Positions at drive time t (movers advanced, limbs swung)."""
        dx = self.velocity * t + self.swing * np.sin(SWING_RATE * t + self.phase)
        shift = np.zeros_like(self.lo)
        shift[:, 0] = dx
        out = Primitives(*(getattr(self, f.name) for f in fields(self)))
        out.lo, out.hi = self.lo + shift, self.hi + shift
        return out


@dataclass
class Lights:
    """Point lights (street lamps, vehicle lamps) that illuminate the scene at night."""

    pos: np.ndarray        # (L, 3)
    color: np.ndarray      # (L, 3) float32 linear intensity (W-like units at 1 m)
    velocity: np.ndarray   # (L,)

    def __len__(self) -> int:
        return len(self.pos)

    @classmethod
    def empty(cls) -> Lights:
        return cls(np.zeros((0, 3)), np.zeros((0, 3), np.float32), np.zeros(0))

    @classmethod
    def concat(cls, parts: list[Lights]) -> Lights:
        return _concat(cls, parts)

    def at_time(self, t: float) -> Lights:
        pos = self.pos.copy()
        pos[:, 0] += self.velocity * t
        return Lights(pos, self.color, self.velocity)


class SceneBuilder:
    """Collects solids and lights one by one (generation is per block, cached), then packs arrays."""

    def __init__(self, velocity: float = 0.0) -> None:
        self.velocity = velocity
        self._rows: list[tuple] = []
        self._lights: list[tuple] = []

    def add(self, kind: int, lo: Sequence[float], hi: Sequence[float], cls: int, material: int,
            color: Sequence[float], variant: float = 0.0, swing: float = 0.0, phase: float = 0.0) -> None:
        """One solid; `variant` in [0, 1) varies its texture, `swing` makes it a walking limb."""
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        if np.any(hi <= lo):
            raise ValueError(f"degenerate solid: lo={lo}, hi={hi}")
        self._rows.append((kind, lo, hi, cls, material, color, variant, self.velocity, swing, phase))

    def light(self, pos: Sequence[float], color: Sequence[float]) -> None:
        self._lights.append((pos, color))

    def primitives(self) -> Primitives:
        if not self._rows:
            return Primitives.empty()
        cols = list(zip(*self._rows))
        return Primitives(np.array(cols[0], np.int8), np.array(cols[1], float), np.array(cols[2], float),
                          np.array(cols[3], np.uint8), np.array(cols[4], np.uint8),
                          np.array(cols[5], np.float32).reshape(-1, 3), np.array(cols[6], np.float32),
                          np.array(cols[7], float), np.array(cols[8], float), np.array(cols[9], float))

    def lights(self) -> Lights:
        if not self._lights:
            return Lights.empty()
        pos, color = zip(*self._lights)
        return Lights(np.array(pos, float).reshape(-1, 3), np.array(color, np.float32).reshape(-1, 3),
                      np.full(len(pos), self.velocity))


def _concat(cls, parts: list):
    """Field-wise concatenation of struct-of-arrays dataclasses (empty parts skipped)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return cls.empty()
    return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))
