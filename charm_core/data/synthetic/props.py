"""Builders for the objects of a street, each made of a few solids with DELIVER classes.

x runs along the street, y to the left, z up; `heading` is +1 for objects facing +x, -1 for -x.
Sizes follow real objects (cars ~4.4 m, people ~1.75 m, lamp posts ~7 m) so depth and LiDAR agree
with what a model sees in real data.
"""
from __future__ import annotations

import numpy as np

from charm_core.classes import CLASS_ID as C
from charm_core.data.synthetic import materials as M
from charm_core.data.synthetic.primitives import BOX, CYLINDER, ELLIPSOID, FENCE, SceneBuilder

CAR_PAINTS = np.array([
    [0.6, 0.6, 0.62], [0.04, 0.04, 0.045], [0.75, 0.75, 0.75], [0.35, 0.02, 0.02], [0.03, 0.08, 0.3],
    [0.2, 0.2, 0.22], [0.45, 0.45, 0.5], [0.05, 0.2, 0.08], [0.6, 0.45, 0.2], [0.8, 0.8, 0.82],
], np.float32)
FACADE_COLORS = np.array([
    [0.45, 0.4, 0.33], [0.55, 0.5, 0.42], [0.35, 0.22, 0.16], [0.6, 0.58, 0.55], [0.3, 0.3, 0.32],
    [0.5, 0.38, 0.3], [0.62, 0.55, 0.4], [0.25, 0.27, 0.3], [0.42, 0.45, 0.48], [0.55, 0.35, 0.25],
], np.float32)
CLOTHES = np.array([
    [0.05, 0.05, 0.06], [0.1, 0.12, 0.3], [0.5, 0.06, 0.05], [0.35, 0.35, 0.35], [0.6, 0.55, 0.45],
    [0.08, 0.2, 0.1], [0.7, 0.7, 0.7], [0.25, 0.15, 0.08], [0.55, 0.4, 0.05],
], np.float32)
SKIN = np.array([[0.6, 0.42, 0.32], [0.42, 0.28, 0.2], [0.25, 0.15, 0.1], [0.7, 0.52, 0.42]], np.float32)
SIGN_COLORS = np.array([[0.55, 0.03, 0.03], [0.03, 0.12, 0.5], [0.7, 0.55, 0.02], [0.05, 0.3, 0.08]],
                       np.float32)
GRASS_TONES = np.array([[0.1, 0.16, 0.05], [0.12, 0.14, 0.06], [0.14, 0.16, 0.07]], np.float32)
GREENS = np.array([[0.07, 0.13, 0.04], [0.1, 0.16, 0.05], [0.06, 0.1, 0.05], [0.12, 0.15, 0.06]], np.float32)


def _pick(rng: np.random.Generator, table: np.ndarray) -> np.ndarray:
    return table[rng.integers(len(table))] * rng.uniform(0.85, 1.15)


def _wheels(b: SceneBuilder, xs: list[float], y: float, hw: float, inset: float, half_length: float,
            height: float, cls: int) -> None:
    """One axle-wide rubber block per x in `xs`, `inset` inside the body's half-width `hw`."""
    for wx in xs:
        b.add(BOX, (wx - half_length, y - hw + inset, 0.0), (wx + half_length, y + hw - inset, height), cls,
              M.RUBBER, (0.03, 0.03, 0.03))


def car(b: SceneBuilder, x: float, y: float, heading: int, rng: np.random.Generator) -> float:
    """A passenger car centred at (x, y); returns its length."""
    length, width = rng.uniform(3.9, 4.8), rng.uniform(1.7, 1.9)
    body_top, roof = rng.uniform(0.95, 1.1), rng.uniform(1.4, 1.6)
    paint = _pick(rng, CAR_PAINTS)
    mat = M.CAR_FWD if heading > 0 else M.CAR_BWD
    hl, hw = length / 2, width / 2
    b.add(BOX, (x - hl, y - hw, 0.32), (x + hl, y + hw, body_top), C["Cars"], mat, paint, rng.random())
    cab = length * rng.uniform(0.45, 0.55)
    cx = x - heading * length * 0.06
    b.add(BOX, (cx - cab / 2, y - hw + 0.08, body_top), (cx + cab / 2, y + hw - 0.08, roof), C["Cars"], M.GLASS,
          (0.05, 0.05, 0.05), rng.random())
    _wheels(b, [x + ax * length for ax in (-0.32, 0.32)], y, hw, inset=0.05, half_length=0.33, height=0.33,
            cls=C["Cars"])
    return length


def bus(b: SceneBuilder, x: float, y: float, heading: int, rng: np.random.Generator) -> float:
    """A city bus (DELIVER 'Bus'); returns its length."""
    length = rng.uniform(10.0, 12.5)
    hl, hw = length / 2, 1.25
    color = _pick(rng, np.array([[0.6, 0.05, 0.03], [0.05, 0.25, 0.5], [0.7, 0.6, 0.1], [0.75, 0.75, 0.75]],
                                np.float32))
    b.add(BOX, (x - hl, y - hw, 0.35), (x + hl, y + hw, 3.1), C["Bus"], M.BUS, color, rng.random())
    _wheels(b, [x + ax * length for ax in (-0.3, 0.32)], y, hw, inset=0.05, half_length=0.5, height=0.4,
            cls=C["Bus"])
    return length


def truck(b: SceneBuilder, x: float, y: float, heading: int, rng: np.random.Generator) -> float:
    """A box truck: cab + cargo box (DELIVER 'Truck'); returns its length."""
    cargo, cab = rng.uniform(5.0, 7.5), 2.2
    length = cargo + cab + 0.3
    hw = 1.25
    front = x + heading * length / 2
    cab_lo, cab_hi = sorted((front, front - heading * cab))
    mat = M.CAR_FWD if heading > 0 else M.CAR_BWD
    b.add(BOX, (cab_lo, y - hw + 0.05, 0.45), (cab_hi, y + hw - 0.05, 2.7), C["Truck"], mat,
          _pick(rng, CAR_PAINTS), rng.random())
    box_end = front - heading * (cab + 0.3)
    lo_x, hi_x = sorted((box_end, box_end - heading * cargo))
    b.add(BOX, (lo_x, y - hw, 0.6), (hi_x, y + hw, 3.6), C["Truck"], M.PLAIN,
          _pick(rng, np.array([[0.75, 0.75, 0.72], [0.5, 0.5, 0.5], [0.6, 0.3, 0.1]], np.float32)), rng.random())
    _wheels(b, [front - heading * 1.2, x - heading * length * 0.3], y, hw, inset=0.1, half_length=0.5, height=0.5,
            cls=C["Truck"])
    return length


def person(b: SceneBuilder, x: float, y: float, z: float, rng: np.random.Generator, walking: bool,
           cls: int = C["Pedestrian"]) -> None:
    """A pedestrian standing on height z; walking ones swing their legs."""
    s = rng.uniform(0.9, 1.1)
    shirt, trousers, skin = _pick(rng, CLOTHES), _pick(rng, CLOTHES), _pick(rng, SKIN)
    leg, hip, shoulder = 0.85 * s, 0.88 * s, 1.45 * s
    stride = 0.18 if walking else 0.0
    phase = rng.uniform(0, 2 * np.pi)
    for side, ph in ((-1, 0.0), (1, np.pi)):
        b.add(BOX, (x - 0.07, y + side * 0.1 - 0.07, z), (x + 0.07, y + side * 0.1 + 0.07, z + leg), cls, M.CLOTH,
              trousers, rng.random(), swing=stride, phase=phase + ph)
    b.add(BOX, (x - 0.13, y - 0.22, z + hip - 0.05), (x + 0.13, y + 0.22, z + shoulder), cls, M.CLOTH, shirt,
          rng.random())
    b.add(ELLIPSOID, (x - 0.1, y - 0.09, z + shoulder), (x + 0.1, y + 0.09, z + shoulder + 0.26 * s), cls, M.PLAIN,
          skin, rng.random())


def two_wheeler(b: SceneBuilder, x: float, y: float, heading: int, rng: np.random.Generator,
                ridden: bool = True) -> float:
    """A bicycle or motorbike (DELIVER 'TwoWheeler'), optionally with its rider; returns its length."""
    motor = rng.random() < 0.5
    r = 0.32 if motor else 0.34
    base = 1.4 if motor else 1.05
    tw = C["TwoWheeler"]
    frame = _pick(rng, CAR_PAINTS)
    for wx in (x - base / 2, x + base / 2):
        b.add(ELLIPSOID, (wx - r, y - 0.05, 0.0), (wx + r, y + 0.05, 2 * r), tw, M.RUBBER, (0.03, 0.03, 0.03))
    if motor:
        b.add(BOX, (x - 0.55, y - 0.2, 0.3), (x + 0.55, y + 0.2, 0.85), tw, M.PLAIN, frame, rng.random())
    else:
        b.add(BOX, (x - 0.45, y - 0.03, 0.35), (x + 0.45, y + 0.03, 0.75), tw, M.METAL, frame, rng.random())
    if ridden:
        person(b, x - heading * 0.1, y, 0.35 if motor else 0.3, rng, walking=not motor)
    return base + 2 * r


def tree(b: SceneBuilder, x: float, y: float, rng: np.random.Generator, scale: float = 1.0) -> None:
    """Trunk plus a crown of a few overlapping ellipsoids (all 'Vegetation', as in DELIVER)."""
    h = rng.uniform(2.2, 3.5) * scale
    tr = rng.uniform(0.12, 0.22) * scale
    b.add(CYLINDER, (x - tr, y - tr, 0.0), (x + tr, y + tr, h + 0.5), C["Vegetation"], M.BARK,
          (0.12, 0.08, 0.05), rng.random())
    green = _pick(rng, GREENS)
    for _ in range(rng.integers(1, 4)):
        rx, rz = rng.uniform(1.4, 3.0) * scale, rng.uniform(1.5, 3.2) * scale
        cx, cy, cz = x + rng.uniform(-0.8, 0.8), y + rng.uniform(-0.8, 0.8), h + rz * rng.uniform(0.6, 0.9)
        b.add(ELLIPSOID, (cx - rx, cy - rx, cz - rz), (cx + rx, cy + rx, cz + rz), C["Vegetation"], M.FOLIAGE,
              green * rng.uniform(0.85, 1.15), rng.random())


def bush(b: SceneBuilder, x: float, y: float, rng: np.random.Generator) -> None:
    rx, ry, rz = rng.uniform(0.6, 1.5), rng.uniform(0.6, 1.5), rng.uniform(0.5, 1.1)
    b.add(ELLIPSOID, (x - rx, y - ry, -0.2), (x + rx, y + ry, 2 * rz - 0.2), C["Vegetation"], M.FOLIAGE,
          _pick(rng, GREENS), rng.random())


def street_lamp(b: SceneBuilder, x: float, y: float, side: int, rng: np.random.Generator) -> None:
    """Lamp post (DELIVER 'Pole') with an arm over the road; its head is a light source at night."""
    h = rng.uniform(6.5, 8.5)
    arm = rng.uniform(1.2, 2.0)
    gray = np.full(3, rng.uniform(0.2, 0.35), np.float32)
    b.add(CYLINDER, (x - 0.09, y - 0.09, 0.0), (x + 0.09, y + 0.09, h), C["Pole"], M.METAL, gray)
    y_end = y - side * arm
    lo_y, hi_y = sorted((y, y_end))
    b.add(BOX, (x - 0.05, lo_y, h - 0.12), (x + 0.05, hi_y, h - 0.04), C["Pole"], M.METAL, gray)
    b.add(BOX, (x - 0.3, y_end - 0.16, h - 0.25), (x + 0.3, y_end + 0.16, h - 0.05), C["Pole"], M.LAMP, gray)
    b.light((x, y_end, h - 0.35), (3.0, 2.5, 1.8))


def traffic_sign(b: SceneBuilder, x: float, y: float, facing: int, rng: np.random.Generator) -> None:
    """Sign post ('Pole') with a retro-reflective plate ('TrafficSign') facing `facing` along x."""
    h = rng.uniform(2.1, 2.8)
    w, hh = rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0)
    b.add(CYLINDER, (x - 0.035, y - 0.035, 0.0), (x + 0.035, y + 0.035, h), C["Pole"], M.METAL, (0.3, 0.3, 0.3))
    px = x - facing * 0.06
    mat = M.SIGN_POSX if facing > 0 else M.SIGN_NEGX
    b.add(BOX, (px - 0.02, y - w / 2, h - hh), (px + 0.02, y + w / 2, h + 0.05), C["TrafficSign"], mat,
          _pick(rng, SIGN_COLORS), rng.random())


def traffic_light(b: SceneBuilder, x: float, y: float, facing: int, side: int, mast: float,
                  rng: np.random.Generator) -> None:
    """Signal post with a head facing `facing`; `mast` > 0 adds an arm over the road with a second head."""
    h = rng.uniform(3.0, 3.6)
    gray = (0.2, 0.2, 0.2)
    mat = M.SIGNAL_POSX if facing > 0 else M.SIGNAL_NEGX
    var = rng.random()
    top = h + (2.6 if mast > 0 else 0.0)
    b.add(CYLINDER, (x - 0.1, y - 0.1, 0.0), (x + 0.1, y + 0.1, top), C["Pole"], M.METAL, gray)
    b.add(BOX, (x - 0.15, y - 0.18, h - 1.0), (x + 0.15, y + 0.18, h), C["TrafficLight"], mat, gray, var)
    if mast > 0:
        y_end = y - side * mast
        lo_y, hi_y = sorted((y, y_end))
        b.add(BOX, (x - 0.08, lo_y, top - 0.2), (x + 0.08, hi_y, top - 0.04), C["Pole"], M.METAL, gray)
        yh = y - side * mast * 0.75
        b.add(BOX, (x - 0.15, yh - 0.18, top - 1.2), (x + 0.15, yh + 0.18, top - 0.2), C["TrafficLight"], mat,
              gray, var)
        if rng.random() < 0.6:   # street-name / lane sign hanging from the arm
            ys = y - side * mast * 0.35
            sign_mat = M.SIGN_POSX if facing > 0 else M.SIGN_NEGX
            b.add(BOX, (x - 0.03, ys - 0.9, top - 0.95), (x + 0.03, ys + 0.9, top - 0.25), C["TrafficSign"], sign_mat,
                  _pick(rng, SIGN_COLORS), rng.random())


def static_prop(b: SceneBuilder, x: float, y: float, side: int, rng: np.random.Generator) -> None:
    """Street furniture (DELIVER 'Static'): bench, bin, bollards, hydrant, utility box, advertising
    pillar, planter or kiosk."""
    kind = rng.integers(8)
    st = C["Static"]
    if kind == 0:  # bench, back towards the buildings
        b.add(BOX, (x - 0.9, y - 0.25, 0.4), (x + 0.9, y + 0.25, 0.48), st, M.PLAIN, (0.3, 0.18, 0.08), rng.random())
        yb = y + side * 0.22
        b.add(BOX, (x - 0.9, yb - 0.04, 0.48), (x + 0.9, yb + 0.04, 0.9), st, M.PLAIN, (0.3, 0.18, 0.08),
              rng.random())
        for lx in (x - 0.8, x + 0.7):
            b.add(BOX, (lx, y - 0.22, 0.0), (lx + 0.1, y + 0.22, 0.4), st, M.METAL, (0.15, 0.15, 0.15))
    elif kind == 1:  # rubbish bin
        b.add(BOX, (x - 0.3, y - 0.3, 0.0), (x + 0.3, y + 0.3, 1.0), st, M.PLAIN, (0.1, 0.25, 0.12), rng.random())
    elif kind == 2:  # bollards
        for dx in (-0.8, 0.0, 0.8):
            b.add(BOX, (x + dx - 0.08, y - 0.08, 0.0), (x + dx + 0.08, y + 0.08, 0.9), st, M.METAL,
                  (0.25, 0.25, 0.25))
    elif kind == 3:  # hydrant
        b.add(BOX, (x - 0.14, y - 0.14, 0.0), (x + 0.14, y + 0.14, 0.75), st, M.PLAIN, (0.5, 0.05, 0.03),
              rng.random())
    elif kind == 4:  # utility box
        b.add(BOX, (x - 0.5, y - 0.3, 0.0), (x + 0.5, y + 0.3, 1.3), st, M.PLAIN, (0.35, 0.38, 0.33), rng.random())
    elif kind == 5:  # advertising pillar
        b.add(CYLINDER, (x - 0.6, y - 0.6, 0.0), (x + 0.6, y + 0.6, 2.8), st, M.CLOTH, _pick(rng, SIGN_COLORS) + 0.2,
              rng.random())
    elif kind == 6:  # planter with a shrub
        b.add(BOX, (x - 0.8, y - 0.4, 0.0), (x + 0.8, y + 0.4, 0.6), st, M.PLAIN, (0.4, 0.38, 0.35), rng.random())
        b.add(ELLIPSOID, (x - 0.7, y - 0.35, 0.4), (x + 0.7, y + 0.35, 1.3), C["Vegetation"], M.FOLIAGE,
              _pick(rng, GREENS), rng.random())
    else:  # newspaper / snack kiosk
        b.add(BOX, (x - 1.2, y - 0.9, 0.0), (x + 1.2, y + 0.9, 2.5), st, M.PLAIN, _pick(rng, FACADE_COLORS),
              rng.random())


def building(b: SceneBuilder, x0: float, x1: float, y_front: float, side: int, depth: float, height: float,
             rng: np.random.Generator) -> None:
    """A block of flats/offices: a box whose street facade gets windows (materials.FACADE)."""
    y_back = y_front + side * depth
    lo_y, hi_y = sorted((y_front, y_back))
    color = _pick(rng, FACADE_COLORS)
    mat = M.BRICK if rng.random() < 0.2 else M.FACADE
    b.add(BOX, (x0, lo_y, 0.0), (x1, hi_y, height), C["Building"], mat, color, rng.random())


def utility_pole(b: SceneBuilder, x: float, y: float, rng: np.random.Generator) -> None:
    """Tall wooden/concrete pole with a cross arm (DELIVER 'Pole')."""
    h = rng.uniform(8.0, 10.0)
    color = _pick(rng, np.array([[0.25, 0.17, 0.1], [0.45, 0.45, 0.43]], np.float32))
    b.add(CYLINDER, (x - 0.14, y - 0.14, 0.0), (x + 0.14, y + 0.14, h), C["Pole"], M.BARK, color, rng.random())
    b.add(BOX, (x - 0.06, y - 1.0, h - 0.9), (x + 0.06, y + 1.0, h - 0.75), C["Pole"], M.PLAIN, color, rng.random())


def wall(b: SceneBuilder, x0: float, x1: float, y: float, height: float, rng: np.random.Generator) -> None:
    mat = M.BRICK if rng.random() < 0.5 else M.PLAIN
    color = _pick(rng, np.array([[0.45, 0.42, 0.38], [0.4, 0.22, 0.15], [0.55, 0.55, 0.52]], np.float32))
    b.add(BOX, (x0, y - 0.15, 0.0), (x1, y + 0.15, height), C["Wall"], mat, color, rng.random())


def fence(b: SceneBuilder, x0: float, x1: float, y: float, height: float, rng: np.random.Generator) -> None:
    """A see-through metal bar fence or an opaque wooden board fence (DELIVER 'Fence')."""
    if rng.random() < 0.5:
        color = _pick(rng, np.array([[0.08, 0.08, 0.08], [0.3, 0.3, 0.3], [0.1, 0.18, 0.1]], np.float32))
        b.add(FENCE, (x0, y - 0.04, 0.0), (x1, y + 0.04, height), C["Fence"], M.METAL, color, rng.random())
    else:
        color = _pick(rng, np.array([[0.32, 0.2, 0.1], [0.45, 0.32, 0.18], [0.25, 0.22, 0.2]], np.float32))
        b.add(BOX, (x0, y - 0.03, 0.0), (x1, y + 0.03, height), C["Fence"], M.PLANKS, color, rng.random())


def verge(b: SceneBuilder, x0: float, x1: float, y0: float, y1: float, top: float, rng: np.random.Generator) -> None:
    """A raised grass strip between curb and footway (DELIVER 'Terrain')."""
    b.add(BOX, (x0, min(y0, y1), 0.0), (x1, max(y0, y1), top), C["Terrain"], M.GRASS, _pick(rng, GRASS_TONES),
          rng.random())


def bus_shelter(b: SceneBuilder, x: float, y: float, side: int, rng: np.random.Generator) -> None:
    """Bus stop shelter (DELIVER 'Static'): back wall, roof and posts."""
    st = C["Static"]
    yb = y + side * 0.7
    frame = (0.2, 0.2, 0.22)
    b.add(BOX, (x - 2.0, min(yb, yb + side * 0.05), 0.0), (x + 2.0, max(yb, yb + side * 0.05), 2.3), st, M.GLASS,
          (0.05, 0.05, 0.05), rng.random())
    b.add(BOX, (x - 2.1, min(y - side * 0.6, yb), 2.3), (x + 2.1, max(y - side * 0.6, yb), 2.45), st, M.METAL, frame)
    for px in (x - 2.0, x + 1.9):
        b.add(BOX, (px, y - side * 0.6 - 0.05, 0.0), (px + 0.1, y - side * 0.6 + 0.05, 2.3), st, M.METAL, frame)


def hedge(b: SceneBuilder, x0: float, x1: float, y: float, height: float, rng: np.random.Generator) -> None:
    b.add(BOX, (x0, y - 0.5, 0.0), (x1, y + 0.5, height), C["Vegetation"], M.FOLIAGE, _pick(rng, GREENS),
          rng.random())
