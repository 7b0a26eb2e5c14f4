"""The street: its cross-section, an endless sequence of city blocks and intersections, road paint.

Everything is procedural and keyed by (seed, block index) or (seed, stream, chunk), so any stretch of
the street can be rebuilt on demand and the same seed always gives the same city.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charm_core.classes import CLASS_ID as C
from charm_core.data.synthetic import materials as M
from charm_core.data.synthetic import props
from charm_core.data.synthetic.primitives import BOX, Lights, Primitives, SceneBuilder

X_START = -160.0          # the first block starts here; drives start at x = 0
PARKING_WIDTH = 2.3
STREAM_CHUNK = 60.0       # traffic is generated in chunks of this length in its own moving frame

ASPHALT = np.array([0.085, 0.085, 0.09], np.float32)
WHITE_PAINT = np.array([0.7, 0.7, 0.68], np.float32)
YELLOW_PAINT = np.array([0.6, 0.45, 0.06], np.float32)
GRASS_ALBEDO = np.array([0.09, 0.14, 0.05], np.float32)
DIRT_ALBEDO = np.array([0.2, 0.15, 0.1], np.float32)


@dataclass(frozen=True)
class CrossSection:
    """Widths across the street (metres); the road is centred on y = 0."""

    lanes: int                 # driving lanes per direction
    lane_width: float
    parking: bool
    sidewalk: float
    curb: float                # curb height = sidewalk top
    yellow_centre: bool        # double yellow centre line instead of a dashed white one

    @property
    def road_half(self) -> float:
        return self.lanes * self.lane_width + (PARKING_WIDTH if self.parking else 0.0)

    @property
    def lot_line(self) -> float:
        return self.road_half + self.sidewalk

    def lane_centre(self, i: int, direction: int) -> float:
        """Centre y of lane i (0 = next to the centre line) for traffic heading `direction` (+1 = +x)."""
        return -direction * (i + 0.5) * self.lane_width

    @classmethod
    def sample(cls, rng: np.random.Generator) -> CrossSection:
        return cls(lanes=int(rng.choice([1, 1, 2])), lane_width=float(rng.uniform(3.0, 3.6)),
                   parking=bool(rng.random() < 0.6), sidewalk=float(rng.uniform(2.8, 5.0)),
                   curb=float(rng.uniform(0.12, 0.18)), yellow_centre=bool(rng.random() < 0.4))


@dataclass
class Block:
    """One city block [x0, x1) followed by an intersection [x1, x1 + crossing)."""

    x0: float
    x1: float
    crossing: float
    prims: Primitives
    lights: Lights
    facades: np.ndarray        # (F, 4): x0, x1, |y| of the front, height, for the sun-shadow test
    facade_side: np.ndarray    # (F,) +1 left, -1 right


class Street:
    """Static city (blocks, cached) + moving traffic (streams, cached chunks) for one seed."""

    def __init__(self, seed: int, ego_speed: float, ego_x0: float = 0.0) -> None:
        self.seed = seed
        self.section = CrossSection.sample(np.random.default_rng([seed, 1]))
        self.blocks: list[Block] = []
        self.ego_speed = ego_speed
        self.ego_x0 = ego_x0
        self.streams = self._streams()
        self._chunks: dict[tuple[int, int], tuple[Primitives, Lights]] = {}

    # ---- blocks -------------------------------------------------------------------------------
    def _next_block(self) -> Block:
        k = len(self.blocks)
        x0 = X_START if k == 0 else self.blocks[-1].x1 + self.blocks[-1].crossing
        rng = np.random.default_rng([self.seed, 2, k])
        length = float(rng.uniform(60.0, 150.0))
        crossing = float(rng.uniform(11.0, 17.0))
        b = SceneBuilder()
        facades: list[tuple] = []
        sides: list[int] = []
        for side in (1, -1):
            f = self._block_side(b, x0, x0 + length, side, rng)
            facades += f
            sides += [side] * len(f)
        return Block(x0, x0 + length, crossing, b.primitives(), b.lights(),
                     np.array(facades, float).reshape(-1, 4), np.array(sides, int))

    def _block_side(self, b: SceneBuilder, x0: float, x1: float, side: int, rng: np.random.Generator) -> list:
        s = self.section
        rh, sw, lot = s.road_half, s.sidewalk, s.lot_line
        sidewalk_color = np.full(3, rng.uniform(0.38, 0.5), np.float32) * (1.0, 0.98, 0.95)
        # an optional grass verge between the curb and the footway, which keeps its corner sections
        verge = float(rng.uniform(1.0, 0.45 * sw)) if rng.random() < 0.35 else 0.0
        if verge > 0:
            props.verge(b, x0 + sw, x1 - sw, side * rh, side * (rh + verge), s.curb, rng)
            for ex in (x0, x1 - sw):
                lo_y, hi_y = sorted((side * rh, side * (rh + verge)))
                b.add(BOX, (ex, lo_y, 0.0), (ex + sw, hi_y, s.curb), C["SideWalk"], M.SIDEWALK, sidewalk_color,
                      rng.random())
        lo_y, hi_y = sorted((side * (rh + verge), side * lot))
        b.add(BOX, (x0, lo_y, 0.0), (x1, hi_y, s.curb), C["SideWalk"], M.SIDEWALK, sidewalk_color, rng.random())
        for ex in (x0, x1 - sw):   # sidewalks around the corners, along the cross streets
            lo_y, hi_y = sorted((side * lot, side * (lot + 90.0)))
            b.add(BOX, (ex, lo_y, 0.0), (ex + sw, hi_y, s.curb), C["SideWalk"], M.SIDEWALK, sidewalk_color,
                  rng.random())
        lx0, lx1 = x0 + sw, x1 - sw
        facades = self._lot(b, lx0, lx1, side, rng)
        self._furniture(b, x0, x1, side, verge, rng)
        if s.parking:
            self._parked(b, x0 + 7.0, x1 - 7.0, side, rng)
        # signals and signs face the traffic of their side: +x traffic (right, side -1) sees -x faces
        facing = side
        xs = x1 - 1.5 if side < 0 else x0 + 1.5
        mast = s.lanes * s.lane_width * 0.9 if rng.random() < 0.6 else 0.0
        props.traffic_light(b, xs, side * (rh + 0.6), facing, side, mast, rng)
        for _ in range(rng.poisson(1.5)):    # people waiting at the corner
            xp = float(rng.uniform(x0 + 0.5, x0 + sw)) if side > 0 else float(rng.uniform(x1 - sw, x1 - 0.5))
            props.person(b, xp, side * (rh + rng.uniform(0.8, sw - 0.5)), s.curb, rng, walking=False)
        return facades

    def _lot(self, b: SceneBuilder, x0: float, x1: float, side: int, rng: np.random.Generator) -> list:
        """Buildings, parks, walls or fences behind the sidewalk; returns facades for shadows."""
        lot = self.section.lot_line
        kind = rng.choice(["buildings", "park", "wall", "fence"], p=[0.46, 0.14, 0.2, 0.2])
        facades = []
        if kind in ("buildings", "wall", "fence"):
            setback0 = 0.0 if kind == "buildings" else float(rng.uniform(4.0, 9.0))
            x = x0
            while x < x1 - 4.0:
                w = min(float(rng.uniform(8.0, 26.0)), x1 - x)
                if rng.random() < 0.2:
                    x += rng.uniform(2.0, 6.0)
                    continue
                setback = setback0 + (float(rng.uniform(1.0, 6.0)) if rng.random() < 0.5 else 0.0)
                height = float(rng.uniform(6.0, 32.0))
                yf = side * (lot + setback)
                props.building(b, x, x + w, yf, side, float(rng.uniform(12.0, 20.0)), height, rng)
                if setback > 2.5 and kind == "buildings" and rng.random() < 0.8:   # front garden fence or wall
                    if rng.random() < 0.6:
                        props.fence(b, x, x + w, side * (lot + 0.2), float(rng.uniform(1.0, 1.8)), rng)
                    else:
                        props.wall(b, x, x + w, side * (lot + 0.3), float(rng.uniform(1.0, 2.0)), rng)
                facades.append((x, x + w, lot + setback, height))
                if rng.random() < 0.5:   # a taller row behind, for a skyline
                    props.building(b, x, x + w, side * (lot + setback + 22.0), side, 15.0,
                                   float(rng.uniform(height, 60.0)), rng)
                x += w
        if kind in ("park", "fence"):
            for _ in range(rng.poisson((x1 - x0) / 7.0)):
                props.tree(b, float(rng.uniform(x0, x1)), side * (lot + rng.uniform(3.0, 30.0)), rng,
                           scale=float(rng.uniform(0.9, 1.5)))
            for _ in range(rng.poisson((x1 - x0) / 10.0)):
                props.bush(b, float(rng.uniform(x0, x1)), side * (lot + rng.uniform(1.5, 8.0)), rng)
        if kind == "wall":
            props.wall(b, x0, x1, side * (lot + 0.3), float(rng.uniform(1.8, 3.5)), rng)
        elif kind == "fence":
            props.fence(b, x0, x1, side * (lot + 0.3), float(rng.uniform(1.5, 2.5)), rng)
        elif kind == "park" and rng.random() < 0.5:
            props.hedge(b, x0, x1, side * (lot + 0.8), float(rng.uniform(0.8, 1.6)), rng)
        return facades

    def _furniture(self, b: SceneBuilder, x0: float, x1: float, side: int, verge: float,
                   rng: np.random.Generator) -> None:
        s = self.section
        curb_band = side * (s.road_half + (verge / 2 if verge else 0.55))
        spacing = float(rng.uniform(15.0, 28.0))
        offset = float(rng.uniform(0, spacing))
        for x in np.arange(x0 + 4.0 + offset, x1 - 4.0, spacing):
            props.street_lamp(b, float(x), curb_band, side, rng)
        if rng.random() < 0.45:   # guard railings along the curb next to the crossings
            rail = side * (s.road_half + 0.2)
            for start, stop in ((x0 + s.sidewalk + 0.5, x0 + s.sidewalk + rng.uniform(8.0, 25.0)),
                                (x1 - s.sidewalk - rng.uniform(8.0, 25.0), x1 - s.sidewalk - 0.5)):
                if stop - start > 2.0:
                    props.fence(b, float(start), float(stop), rail, float(rng.uniform(0.9, 1.2)), rng)
        if rng.random() < 0.35:   # overhead lines on utility poles along the lot line
            gap = float(rng.uniform(25.0, 40.0))
            for x in np.arange(x0 + 5.0 + rng.uniform(0, gap), x1 - 5.0, gap):
                props.utility_pole(b, float(x), side * (s.lot_line - 0.3), rng)
        if verge or rng.random() < 0.5:   # tree-lined street
            gap = float(rng.uniform(7.0, 12.0))
            for x in np.arange(x0 + 6.0 + rng.uniform(0, gap), x1 - 6.0, gap):
                if rng.random() < 0.9:
                    props.tree(b, float(x), curb_band + side * 0.3, rng, scale=float(rng.uniform(0.8, 1.1)))
        for _ in range(rng.poisson((x1 - x0) / 15.0)):
            props.traffic_sign(b, float(rng.uniform(x0 + 3, x1 - 3)), curb_band, side, rng)
        far_band = side * (s.lot_line - 0.6)
        for _ in range(rng.poisson((x1 - x0) / 8.0)):
            props.static_prop(b, float(rng.uniform(x0 + 3, x1 - 3)), far_band, side, rng)
        if rng.random() < 0.5:
            props.bus_shelter(b, float(rng.uniform(x0 + 8, x1 - 8)), side * (s.road_half + verge + 1.3), side, rng)
        for _ in range(rng.poisson((x1 - x0) / 30.0)):
            x = float(rng.uniform(x0 + 3, x1 - 3))
            for k in range(rng.integers(1, 5)):
                props.two_wheeler(b, x + 0.7 * k, side * (s.road_half + verge + 0.9), 1, rng, ridden=False)
        for _ in range(rng.poisson((x1 - x0) / 25.0)):   # people standing around
            props.person(b, float(rng.uniform(x0 + 2, x1 - 2)), side * (s.road_half + verge + rng.uniform(
                0.6, max(0.7, s.sidewalk - verge - 0.5))), s.curb, rng, walking=False)

    def _parked(self, b: SceneBuilder, x0: float, x1: float, side: int, rng: np.random.Generator) -> None:
        y = side * (self.section.road_half - PARKING_WIDTH / 2)
        x = x0 + float(rng.uniform(0.0, 8.0))
        while x < x1 - 5.0:
            if rng.random() < 0.75:
                kind = rng.random()
                heading = -side
                if kind < 0.9:
                    length = props.car(b, x + 2.4, y, heading, rng)
                else:
                    length = props.truck(b, x + 4.5, y, heading, rng)
                x += length + float(rng.uniform(0.8, 3.0))
            else:
                x += float(rng.uniform(3.0, 12.0))

    def blocks_between(self, xa: float, xb: float) -> list[Block]:
        """All blocks whose extent (with their intersection) overlaps [xa, xb]."""
        while not self.blocks or self.blocks[-1].x1 + self.blocks[-1].crossing < xb:
            self.blocks.append(self._next_block())
        return [bl for bl in self.blocks if bl.x1 + bl.crossing >= xa and bl.x0 <= xb]

    # ---- traffic ------------------------------------------------------------------------------
    def _streams(self) -> list[tuple[str, float, float, int]]:
        """(kind, y, speed, heading) of each moving stream: lanes of traffic and sidewalk walkers."""
        s = self.section
        rng = np.random.default_rng([self.seed, 3])
        out = []
        for i in range(s.lanes):
            ego_lane = i == s.lanes - 1
            speed = self.ego_speed if ego_lane else self.ego_speed + float(rng.uniform(2.0, 5.0))
            out.append(("ego_lane" if ego_lane else "lane", s.lane_centre(i, 1), speed, 1))
            out.append(("lane", s.lane_centre(i, -1), -float(rng.uniform(6.0, 12.0)), -1))
        for side in (1, -1):
            for heading in (1, -1):
                y = side * (s.road_half + rng.uniform(1.6, s.sidewalk - 0.4))
                out.append(("walk", float(y), heading * float(rng.uniform(1.1, 1.6)), heading))
        return out

    def _chunk(self, j: int, k: int) -> tuple[Primitives, Lights]:
        key = (j, k)
        if key not in self._chunks:
            kind, y, speed, heading = self.streams[j]
            rng = np.random.default_rng([self.seed, 4, j, k + (1 << 30)])  # k may be negative
            b = SceneBuilder(velocity=speed)
            s0 = k * STREAM_CHUNK
            if kind == "walk":
                for _ in range(rng.poisson(STREAM_CHUNK / 9.0)):
                    props.person(b, s0 + float(rng.uniform(0, STREAM_CHUNK)), y + float(rng.uniform(-0.4, 0.4)),
                                 self.section.curb, rng, walking=True)
            else:
                x = s0 + float(rng.exponential(15.0))
                while x < s0 + STREAM_CHUNK:
                    u = rng.random()
                    est = 12.0 if u > 0.82 else 5.0
                    blocked = kind == "ego_lane" and (x + est > self.ego_x0 - 12.0) and (x - est < self.ego_x0 + 9.0)
                    if blocked:
                        x = self.ego_x0 + 9.0 + est
                        continue
                    if u < 0.68:
                        length = props.car(b, x, y, heading, rng)
                    elif u < 0.82:
                        length = props.two_wheeler(b, x, y + float(rng.uniform(-0.6, 0.6)), heading, rng)
                    elif u < 0.91:
                        length = props.bus(b, x, y, heading, rng)
                    else:
                        length = props.truck(b, x, y, heading, rng)
                    x += length + 4.0 + float(rng.exponential(22.0))
            self._chunks[key] = (b.primitives(), b.lights())
        return self._chunks[key]

    def snapshot(self, t: float, xa: float, xb: float) -> tuple[Primitives, Lights, list[Block]]:
        """Solids and lights overlapping x in [xa, xb] at time t (static + traffic advanced to t)."""
        blocks = self.blocks_between(xa - 30.0, xb + 30.0)
        prims = [bl.prims for bl in blocks]
        lights = [bl.lights for bl in blocks]
        needed = []
        for j, (_, _, speed, _) in enumerate(self.streams):
            sa, sb = xa - speed * t - 15.0, xb - speed * t + 15.0
            needed += [(j, k) for k in range(int(np.floor(sa / STREAM_CHUNK)), int(np.floor(sb / STREAM_CHUNK)) + 1)]
        self._chunks = {key: self._chunks[key] for key in needed if key in self._chunks}  # bounded cache
        for j, k in needed:
            p, li = self._chunk(j, k)
            prims.append(p.at_time(t))
            lights.append(li.at_time(t))
        allp = Primitives.concat(prims)
        keep = (allp.hi[:, 0] >= xa) & (allp.lo[:, 0] <= xb)
        return allp.select(keep), Lights.concat(lights), blocks

    # ---- ground ------------------------------------------------------------------------------
    def ground(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Class, albedo and LiDAR reflectivity of ground-plane points (road, paint, terrain)."""
        s = self.section
        blocks = self.blocks_between(float(x.min()), float(x.max()))
        starts = np.array([bl.x0 for bl in blocks])
        ends = np.array([bl.x1 for bl in blocks])
        k = np.clip(np.searchsorted(starts, x, side="right") - 1, 0, len(blocks) - 1)
        in_crossing = x >= ends[k]
        ay = np.abs(y)
        road = (ay < s.road_half) | in_crossing
        # paint: centre, lane dividers, edge lines, zebra crossings before/after each intersection
        dash = np.mod(x, 9.0) < 3.0
        if s.yellow_centre:
            centre = np.abs(ay - 0.15) < 0.06
        else:
            centre = (ay < 0.07) & dash
        lines = centre
        for i in range(1, s.lanes):
            lines |= (np.abs(ay - i * s.lane_width) < 0.07) & dash
        if s.parking:
            lines |= np.abs(ay - s.lanes * s.lane_width) < 0.07
        near_end = ends[k] - x
        near_start = x - starts[k]
        zebra_x = ((near_end > 1.0) & (near_end < 4.0)) | ((near_start > 1.0) & (near_start < 4.0))
        zebra = zebra_x & (ay < s.road_half) & (np.mod(y + s.road_half, 1.0) < 0.5)
        stop = (near_end > 4.6) & (near_end < 5.1) & (y < 0) & (y > -s.lanes * s.lane_width)
        paint = road & ~in_crossing & (lines | zebra | stop)
        yellow = paint & centre & s.yellow_centre

        cls = np.where(road, C["Road"], C["Terrain"]).astype(np.uint8)
        cls[paint] = C["RoadLine"]
        tex = M.noise(x, y, 6.0)
        patch = M.noise(x * 0.13, y * 0.13, 1.0)
        asphalt = ASPHALT * (0.75 + 0.5 * tex + 0.3 * (patch - 0.5))[:, None]
        grass_mix = M.noise(x * 0.3, y * 0.3, 1.0)[:, None]
        shade = (0.7 + 0.6 * M.noise(y, x, 10.0))[:, None]
        terrain = (GRASS_ALBEDO * (1 - grass_mix) + DIRT_ALBEDO * grass_mix) * shade
        albedo = np.where(road[:, None], asphalt, terrain).astype(np.float32)
        paint_col = np.where(yellow[:, None], YELLOW_PAINT, WHITE_PAINT) * (0.85 + 0.3 * tex)[:, None]
        albedo[paint] = paint_col[paint]
        refl = np.where(road, 0.1 + 0.04 * tex, 0.35).astype(np.float32)
        refl[paint] = 0.8 + 0.1 * tex[paint]
        return cls, albedo, refl
