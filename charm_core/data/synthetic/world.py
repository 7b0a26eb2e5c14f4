"""World: a seeded street driven by a car carrying a camera, a depth camera, an event camera, a
LiDAR and (optionally) a thermal camera. Every frame is rendered from one geometry, so the modalities
agree pixel for pixel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from charm_core.classes import CLASS_ID
from charm_core.data.synthetic import sensors
from charm_core.data.synthetic import thermal as lwir
from charm_core.data.synthetic.conditions import FAILURES, WEATHER, check_condition
from charm_core.data.synthetic.layout import Block, Street
from charm_core.data.synthetic.materials import surface
from charm_core.data.synthetic.primitives import Lights, Primitives
from charm_core.data.synthetic.raycast import SKY, PinholeGrid, SphericalGrid, cast, surface_normals
from charm_core.data.synthetic.shading import atmosphere, object_shadows, radiance, sky, sun_visibility
from charm_core.encoders.event import events_to_frame
from charm_core.encoders.geometry import SensorGeometry

CAMERA_MAX_T = 300.0
LOOK_BEHIND = 100.0


@dataclass(frozen=True)
class LidarSpec:
    """A spinning LiDAR mounted level, `mount_up` metres above the camera."""

    rings: int = 32
    elevation_deg: tuple[float, float] = (-22.5, 22.5)
    azimuth_steps: int = 1024
    max_range: float = 100.0
    mount_up: float = 0.3

    def elevations(self) -> np.ndarray:
        return np.radians(np.linspace(self.elevation_deg[0], self.elevation_deg[1], self.rings))


@dataclass
class SensorFrame:
    """Everything the rig measures at one instant, plus the ground truth, all from one geometry."""

    stamp: float                  # seconds since the start of the drive
    rgb: np.ndarray               # HxWx3 uint8
    depth: np.ndarray             # HxW float32 metres, 0 = no return (sky / beyond max range)
    event: np.ndarray             # HxWx3 uint8 event frame (events since the previous frame)
    lidar: np.ndarray             # Nx4 float32 (x, y, z, intensity 0..1) in the LiDAR frame
    labels: np.ndarray            # HxW uint8 train ids 0..24, 255 = unlabelled
    K: np.ndarray                 # 3x3
    geometry: SensorGeometry      # camera height/pitch + T_cam_lidar (ground truth extrinsics)
    condition: str
    case: str | None
    thermal: np.ndarray | None = None   # HxW float32 Kelvin (World(thermal=True)), registered to the camera


@dataclass
class _CameraRender:
    """What one camera ray cast yields before any sensor model is applied."""

    radiance: np.ndarray          # HxWx3 linear, after atmosphere
    labels: np.ndarray
    z: np.ndarray                 # HxW ray depth
    hit: np.ndarray               # HxW bool, a surface (not sky)
    dirs: np.ndarray              # HxWx3 world ray directions
    surfaces: lwir.SurfaceSample | None  # the hit points, for the thermal camera


def _time_key(t: float) -> int:
    """Non-negative integer naming a drive time (microseconds), for per-frame random streams."""
    return int(round(t * 1e6)) + (1 << 40)


def _quantize(t: float) -> float:
    """Render times live on a microsecond grid, so k/fps - 1/fps and (k-1)/fps name the same frame."""
    return round(t * 1e6) / 1e6


class World:
    """A drive through a procedural street; `World(seed)` always produces the same frames."""

    def __init__(self, seed: int, size_hw: tuple[int, int] = (256, 256), condition: str = "sun",
                 case: str | None = None, fps: float = 10.0, speed: float = 8.0, *, camera_height: float = 1.6,
                 camera_pitch: float = 0.0, hfov_deg: float = 90.0, start_x: float = 0.0,
                 moving_objects: bool = True, lidar: LidarSpec = LidarSpec(), thermal: bool = False) -> None:
        check_condition(condition, case)
        h, w = (int(v) for v in size_hw)
        if h < 8 or w < 8:
            raise ValueError(f"size_hw must be at least 8x8, got {size_hw}")
        if fps <= 0 or speed < 0 or not 0.5 < camera_height < 5.0 or not 10.0 <= hfov_deg < 170.0:
            raise ValueError("expected fps > 0, speed >= 0, camera_height in (0.5, 5) m, hfov_deg in [10, 170)")
        if int(seed) < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        if start_x < 0:
            raise ValueError(f"start_x must be >= 0 (the street is built from x = 0 on), got {start_x}")
        self.seed, self.size_hw, self.fps, self.speed = int(seed), (h, w), float(fps), float(speed)
        self.condition, self.case = condition, case
        self.start_x, self.moving_objects, self.lidar_spec = float(start_x), moving_objects, lidar
        self.street = Street(self.seed, ego_speed=self.speed, ego_x0=self.start_x)
        rng = np.random.default_rng([self.seed, 5])
        az, el = rng.uniform(-np.pi, np.pi), rng.uniform(np.radians(25), np.radians(60))
        self.sun_dir = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        self._sway = rng.uniform(0, 2 * np.pi, 3)
        f = (w / 2) / np.tan(np.radians(hfov_deg) / 2)
        self.K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])
        self._lane_y = self.street.section.lane_centre(self.street.section.lanes - 1, 1)   # ego: right lane
        R_wc, _ = self._rotations(0.0, camera_pitch)
        T = np.eye(4)
        T[:3, :3] = R_wc.T                                   # LiDAR and camera share yaw; LiDAR is level
        T[:3, 3] = R_wc.T @ np.array([0.0, 0.0, lidar.mount_up])
        self.geometry = SensorGeometry(camera_height=float(camera_height), camera_pitch=float(camera_pitch),
                                       T_cam_lidar=T)
        self._event_threshold = sensors.EVENT_THRESHOLD * (1 + 0.03 * rng.standard_normal((h, w)))
        self.thermal = thermal
        self._thermal_columns = lwir.column_pattern(self.seed, w)
        self._last_render: tuple[tuple[float, str], _CameraRender] | None = None

    # ---- pose -------------------------------------------------------------------------------------
    @staticmethod
    def _rotations(yaw: float, pitch: float) -> tuple[np.ndarray, np.ndarray]:
        """Camera-to-world and LiDAR-to-world rotations for a heading `yaw` and camera `pitch`."""
        cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
        fwd = np.array([cp * cy, cp * sy, -sp])
        right = np.array([sy, -cy, 0.0])
        R_wc = np.column_stack([right, np.cross(fwd, right), fwd])
        R_wl = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
        return R_wc, R_wl

    def pose(self, t: float) -> tuple[np.ndarray, float]:
        """Camera position (world) and heading at drive time t; sway depends on distance, not time,
        so a parked car (speed 0) has a perfectly still camera."""
        x = self.start_x + self.speed * t
        p = self._sway
        y = self._lane_y + 0.25 * np.sin(2 * np.pi * x / 70.0 + p[0])
        yaw = 0.05 * np.sin(2 * np.pi * x / 55.0 + p[1]) + 0.02 * np.sin(2 * np.pi * x / 23.0 + p[2])
        return np.array([x, y, self.geometry.camera_height]), float(yaw)

    # ---- rendering --------------------------------------------------------------------------------
    def set_condition(self, condition: str, case: str | None = None) -> None:
        """Switch weather/light and sensor failure; the street itself stays the same."""
        check_condition(condition, case)
        self.condition, self.case = condition, case

    def _scene_time(self, t: float) -> float:
        """The clock of the scene itself (traffic, walkers, signals): frozen when nothing may move."""
        return t if self.moving_objects else 0.0

    def _scene(self, t: float, x: float) -> tuple[Primitives, Lights, list[Block]]:
        return self.street.snapshot(self._scene_time(t), x - LOOK_BEHIND, x + CAMERA_MAX_T)

    def _camera_cached(self, t: float) -> _CameraRender:
        """The camera render at t, reusing the previous one: consecutive frames share a render (the
        events of frame k need render k - 1), which halves the cost of a live drive."""
        key = (t, self.condition)
        if self._last_render is None or self._last_render[0] != key:
            self._last_render = (key, self._camera(t))
        return self._last_render[1]

    def _camera(self, t: float) -> _CameraRender:
        weather = WEATHER[self.condition]
        pos, yaw = self.pose(t)
        prims, lights, blocks = self._scene(t, pos[0])
        R_wc, _ = self._rotations(yaw, self.geometry.camera_pitch)
        grid = PinholeGrid(pos, R_wc, self.K, self.size_hw)
        hits = cast(grid, prims, CAMERA_MAX_T)
        hit = hits.prim != SKY
        h, w = self.size_hw
        rad = np.empty((h, w, 3), np.float32)
        labels = np.full((h, w), CLASS_ID["Sky"], np.uint8)
        rad[~hit] = sky(grid.dirs[~hit], weather, self.sun_dir)
        surfaces = None
        if hit.any():
            pts = hits.points(hit)
            prim = hits.prim[hit]
            normals = surface_normals(pts, prim, prims)
            surf = surface(pts, normals, prim, prims, self.street.ground, weather.night, self._scene_time(t))
            view = grid.dirs[hit].astype(np.float64)
            dist = np.linalg.norm(view, axis=1) * hits.t[hit]
            view /= np.linalg.norm(view, axis=1, keepdims=True)
            shadows = object_shadows(grid, hit, pts, normals, prims, self.sun_dir if weather.sun > 0 else None)
            lit = radiance(pts, normals, view, surf, weather, self.sun_dir, blocks, self.street.section.lot_line,
                           lights, shadows, R_wc[:, 2], pos)
            rad[hit] = atmosphere(lit, dist, weather)
            labels[hit] = surf.cls
            if self.thermal:
                sun_vis = shadows[0]
                if weather.sun > 0:
                    sun_vis = sun_vis * sun_visibility(pts, self.sun_dir, blocks, self.street.section.lot_line)
                surfaces = lwir.SurfaceSample(normals, dist, prim, prims, surf, sun_vis)
        if weather.rain > 0:
            rng = np.random.default_rng([self.seed, _time_key(t), 3])
            rad += sensors.rain_streaks(self.size_hw, rng, weather.rain)[..., None]
        return _CameraRender(rad, labels, hits.t, hit, grid.dirs, surfaces)

    def _lidar(self, t: float) -> np.ndarray:
        spec = self.lidar_spec
        pos, yaw = self.pose(t)
        origin = pos + np.array([0.0, 0.0, spec.mount_up])
        prims, _, _ = self._scene(t, pos[0])
        _, R_wl = self._rotations(yaw, 0.0)
        grid = SphericalGrid(origin, R_wl, spec.elevations(), spec.azimuth_steps)
        hits = cast(grid, prims, spec.max_range)
        hit = hits.prim != SKY
        refl = np.zeros(grid.shape, np.float32)
        cos_inc = np.zeros(grid.shape)
        if hit.any():
            pts = hits.points(hit)
            prim = hits.prim[hit]
            normals = surface_normals(pts, prim, prims)
            surf = surface(pts, normals, prim, prims, self.street.ground, False, self._scene_time(t))
            refl[hit] = surf.reflectivity
            d = grid.dirs[hit].astype(np.float64)
            cos_inc[hit] = np.abs((normals * d).sum(1)) / np.linalg.norm(d, axis=1)
        rng = np.random.default_rng([self.seed, _time_key(t), 2])
        return sensors.lidar_returns(np.where(hit, hits.t, 0.0), hit, refl, cos_inc, grid.local_dirs,
                                     WEATHER[self.condition], FAILURES[self.case], spec.max_range, rng)

    def _frame(self, t: float, cam: _CameraRender, prev: _CameraRender) -> SensorFrame:
        weather, failure = WEATHER[self.condition], FAILURES[self.case]
        def stream(sensor: int) -> np.random.Generator:   # one random stream per (frame, sensor)
            return np.random.default_rng([self.seed, _time_key(t), sensor])

        rgb = sensors.camera_image(cam.radiance, weather, failure, stream(1))
        depth = sensors.depth_image(cam.z, cam.hit, weather, stream(4))
        ds = failure.event_downscale
        pos, neg = sensors.event_counts(sensors.log_luminance(prev.radiance, ds),
                                        sensors.log_luminance(cam.radiance, ds), self._threshold(ds))
        if weather.night:   # background activity of a dark event sensor
            noise = stream(5).random(pos.shape)
            pos = pos + (noise < 0.0015)
            neg = neg + (noise > 1 - 0.0015)
        event = events_to_frame(pos, neg)
        if ds > 1:
            h, w = self.size_hw
            event = np.repeat(np.repeat(event, ds, axis=0), ds, axis=1)
            event = np.pad(event, ((0, max(0, h - event.shape[0])), (0, max(0, w - event.shape[1])), (0, 0)),
                           mode="edge")[:h, :w]
        return SensorFrame(stamp=float(t), rgb=rgb, depth=depth, event=event, lidar=self._lidar(t),
                           labels=cam.labels, K=self.K.copy(), geometry=self.geometry, condition=self.condition,
                           case=self.case, thermal=self._thermal(t, cam) if self.thermal else None)

    def _thermal(self, t: float, cam: _CameraRender) -> np.ndarray:
        weather = WEATHER[self.condition]
        kelvin = np.empty(cam.hit.shape, np.float32)
        kelvin[~cam.hit] = lwir.sky_temperature(cam.dirs[~cam.hit], self.condition)
        if cam.surfaces is not None:
            s = cam.surfaces
            surface = lwir.surface_temperature(s, weather, self.condition, self.sun_dir)
            kelvin[cam.hit] = lwir.through_atmosphere(surface, s.distance, weather, self.condition)
        rng = np.random.default_rng([self.seed, _time_key(t), 6])
        return lwir.sensor_image(kelvin, self._thermal_columns, rng)

    def thermal_at(self, t: float) -> np.ndarray:
        """What the thermal camera reports at drive time t: HxW float32 Kelvin, registered to the RGB
        camera (same K and size). For a rig publishing mono16 centi-Kelvin: thermal.centikelvin(...).
        Needs World(thermal=True); after frame_at(t) it reuses that frame's camera render."""
        if not self.thermal:
            raise ValueError("this World renders no thermal camera; create it with thermal=True")
        if not np.isfinite(t) or t < 0:
            raise ValueError(f"drive time must be a finite t >= 0, got {t}")
        t = _quantize(t)
        return self._thermal(t, self._camera_cached(t))

    def _threshold(self, downscale: int) -> np.ndarray:
        th = self._event_threshold
        return th if downscale == 1 else th[::downscale, ::downscale][: th.shape[0] // downscale,
                                                                      : th.shape[1] // downscale]

    def frame_at(self, t: float) -> SensorFrame:
        """The frame at drive time t >= 0 (events integrate from t - 1/fps to t).

        Deterministic in (seed, t, condition, case); calling it at consecutive frame times (as a
        live rig does) costs one camera render per frame instead of two."""
        if not np.isfinite(t) or t < 0:
            raise ValueError(f"drive time must be a finite t >= 0, got {t}")
        t = _quantize(t)
        prev = self._camera_cached(_quantize(t - 1.0 / self.fps))
        return self._frame(t, self._camera_cached(t), prev)

    def frames(self, n: int | None = None) -> Iterator[SensorFrame]:
        """Consecutive frames at t = k / fps, k = 0, 1, ... (endless when n is None)."""
        k = 0
        while n is None or k < n:
            yield self.frame_at(k / self.fps)
            k += 1
