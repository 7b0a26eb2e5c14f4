"""Content health: frozen, blinded, saturated and collapsed sensors found on hand-built frames, and
the monitor's hysteresis and cross-sensor rule (a scene static for every sensor is no fault)."""
from __future__ import annotations

import numpy as np
import pytest

from charm_ros.runtime.content_health import HEALTH_PARAMETERS, ContentHealth, HealthConfig, inspect
from charm_ros.runtime.faults import FaultInjector, parse_faults
from charm_ros.runtime.parameters import check_all

H, W = 128, 160
FPS = 10.0


SENSORS = ("rgb", "depth", "lidar", "event", "thermal")


def scene(t: float) -> dict[str, np.ndarray]:
    """A textured scene sliding sideways at 40 px/s, seen by a camera, a depth camera, a LiDAR, an event
    camera (sparse events where the texture moves) and a thermal camera (Kelvin)."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    u = x + 40.0 * t
    rng = np.random.default_rng(int(t * 1000))
    gray = 128 + 60 * np.sin(u / 7.0) * np.cos(y / 11.0) + rng.normal(0, 1.5, (H, W))
    rgb = np.repeat(np.clip(gray, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    depth = (8.0 + 4.0 * np.sin(u / 13.0) + 0.01 * rng.standard_normal((H, W))).astype(np.float32)
    depth[:10] = 0.0  # sky: no return
    az = np.linspace(-np.pi, np.pi, 8000, endpoint=False)
    r = 10.0 + 3.0 * np.sin(3 * az + 6.0 * t) + 0.01 * rng.standard_normal(az.size)
    lidar = np.stack([r * np.cos(az), r * np.sin(az), np.full_like(az, -1.5), np.full_like(az, 0.5)], axis=1)
    event = np.zeros((H, W, 3), np.uint8)
    event[(np.abs(np.cos(u / 7.0)) < 0.2) & (rng.random((H, W)) < 0.3)] = 80
    thermal = (285.0 + 8.0 * np.sin(u / 9.0) + 0.05 * rng.standard_normal((H, W))).astype(np.float32)
    return {"rgb": rgb, "depth": depth, "lidar": lidar.astype(np.float32), "event": event, "thermal": thermal}


def drive(health: ContentHealth, frames: int, faults: str = "", start: float = 0.0, parked: bool = False):
    """Feed `frames` frames at 10 Hz; returns per frame the sensors left out and the verdict texts."""
    injector = FaultInjector(parse_faults(faults, SENSORS), seed=1)
    out = []
    for k in range(frames):
        t = start + k / FPS
        arrays = scene(0.0 if parked else t)
        texts = {}
        for sensor, array in arrays.items():
            verdict = health.observe(sensor, injector.apply(sensor, array, t), stamp=t + 1.0)
            texts[sensor] = verdict
        out.append((health.excluded(), texts))
    return out


def first_excluded(run, sensor: str) -> int | None:
    return next((k for k, (excluded, _) in enumerate(run) if sensor in excluded), None)


def test_clean_frames_are_not_flagged():
    run = drive(ContentHealth(), 40)
    assert all(not excluded for excluded, _ in run)
    assert all(not v.fault.kind for _, texts in run for v in texts.values())


@pytest.mark.parametrize("fault", ["frozen", "frozen_jitter", "frozen_old"])
@pytest.mark.parametrize("sensor", ["rgb", "depth", "lidar"])
def test_frozen_is_found_with_jitter_and_left_out_then_recovers(sensor, fault):
    run = drive(ContentHealth(), 45, f"{sensor}:{fault}:2.0-3.0")
    entered = first_excluded(run, sensor)
    assert entered is not None and 20 <= entered <= 24          # 2-4 frames after the fault's start
    assert run[entered][1][sensor].fault.kind == "frozen"
    assert "identical frames over" in run[entered][1][sensor].text()
    assert run[entered][1][sensor].text().endswith("left out")
    left = next(k for k in range(entered, 45) if sensor not in run[k][0])
    assert 30 <= left <= 34                                    # healthy again within 4 frames of the end
    others = set(SENSORS) - {sensor}
    assert not any(others & set(excluded) for excluded, _ in run)


@pytest.mark.parametrize("sensor, fault, kind", [
    ("depth", "frozen", "frozen"), ("depth", "saturated", "saturated"), ("depth", "noise", "noisy"),
    ("rgb", "black", "blinded"), ("lidar", "frozen_jitter", "frozen"), ("lidar", "sparse", "collapsed"),
    ("event", "frozen", "frozen"), ("event", "saturated", "saturated"), ("thermal", "flat", "flat"),
    ("rgb", "frozen_old", "frozen")])
def test_every_excluded_fault_recovers_and_leaves_the_history_unpolluted(sensor, fault, kind):
    health = ContentHealth()
    run = drive(health, 60, f"{sensor}:{fault}:2.0-5.0")
    assert run[29][1][sensor].fault.kind == kind and sensor in run[29][0]
    back = next(k for k in range(50, 60) if sensor not in run[k][0])
    assert back <= 53                                         # healthy within 0.3 s of the fault's end
    assert all(sensor not in excluded for excluded, _ in run[back:])
    clean = ContentHealth()
    drive(clean, 60)                                          # the same drive without the fault
    # what the checks compare with (typical change, recent counts) learnt from healthy frames only
    assert np.median(health.states[sensor].changes) == pytest.approx(np.median(clean.states[sensor].changes),
                                                                     rel=0.1)
    if clean.states[sensor].counts:
        assert np.median(health.states[sensor].counts) == pytest.approx(np.median(clean.states[sensor].counts),
                                                                        rel=0.05)


def test_a_scene_static_for_every_sensor_is_not_a_fault():
    health = ContentHealth()
    drive(health, 20)                              # typical changes learnt while driving
    parked = drive(health, 30, start=2.0, parked=True)
    assert all(not excluded for excluded, _ in parked)


def test_a_frozen_sensor_stays_out_while_the_platform_parks():
    health = ContentHealth()
    run = drive(health, 30, "depth:frozen:1.0-100")
    assert "depth" in run[-1][0]
    parked = drive(health, 10, "depth:frozen:0-100", start=3.0, parked=True)
    assert all("depth" in excluded for excluded, _ in parked)


def test_hysteresis_counts_frames_to_enter_and_to_leave():
    config = HealthConfig(enter_frames=3, leave_frames=5)
    run = drive(ContentHealth(config), 40, "depth:saturated:1.0-2.0")
    flagged = [k for k, (_, texts) in enumerate(run) if texts["depth"].fault.kind == "saturated"]
    assert flagged[0] == 10 + 3 - 1                       # the third saturated frame
    assert flagged[-1] == 20 + 5 - 2                      # the fourth healthy frame still reports it
    assert sum(v["depth"].changed for _, v in run) == 2   # entered once, recovered once: logged once each


def test_saturated_and_noisy_depth_blinded_and_covered_rgb_are_found():
    config = HealthConfig()
    arrays = scene(0.5)
    injector = FaultInjector(parse_faults("depth:saturated:0-1,rgb:black:0-1"), seed=0)
    assert inspect("depth", injector.apply("depth", arrays["depth"], 0.5), config)[1].kind == "saturated"
    assert inspect("rgb", injector.apply("rgb", arrays["rgb"], 0.5), config)[1].kind == "blinded"
    noisy = FaultInjector(parse_faults("depth:noise:0-1,rgb:covered:0-1"), seed=0)
    assert inspect("depth", noisy.apply("depth", arrays["depth"], 0.5), config)[1].kind == "noisy"
    assert inspect("rgb", noisy.apply("rgb", arrays["rgb"], 0.5), config)[1].kind == "covered"
    for sensor in ("rgb", "depth"):
        assert inspect(sensor, arrays[sensor], config)[1].kind == ""


def test_lidar_return_collapse_is_judged_against_its_own_history():
    run = drive(ContentHealth(), 40, "lidar:sparse:2.0-3.0")
    kinds = [texts["lidar"].fault.kind for _, texts in run]
    assert kinds[21] == "collapsed" and kinds[29] == "collapsed" and kinds[34] == ""
    assert "returns" in run[21][1]["lidar"].fault.measure
    assert "lidar" in run[21][0] and "lidar" not in run[34][0]


def test_event_saturation_and_thermal_flat_field():
    config = HealthConfig()
    events = np.zeros((H, W, 3), np.uint8)
    events[::9, ::5] = 64
    assert inspect("event", events, config)[1].kind == ""
    assert inspect("event", np.full((H, W, 3), 255, np.uint8), config)[1].kind == "saturated"
    kelvin = (280 + 10 * np.random.default_rng(0).random((H, W))).astype(np.float32)
    kelvin[:, :W // 2] += 15
    assert inspect("thermal", kelvin, config)[1].kind == ""
    assert inspect("thermal", np.full((H, W), 290.0, np.float32), config)[1].kind == "flat"


def test_detect_only_reports_without_leaving_out():
    run = drive(ContentHealth(HealthConfig(exclude=False)), 30, "depth:frozen:1.0-3.0")
    assert not any(excluded for excluded, _ in run)
    assert run[-1][1]["depth"].fault.kind == "frozen"
    assert run[-1][1]["depth"].text().endswith("kept (reported only)")


def test_parameters_build_the_config_and_check_ranges():
    values = check_all(HEALTH_PARAMETERS, {"health.enter_frames": 4, "health.exclude": False})
    config = HealthConfig.from_params(values)
    assert config.enter_frames == 4 and config.exclude is False
    assert config.leave_frames == HealthConfig().leave_frames
    with pytest.raises(ValueError, match="health.still_ratio"):
        check_all(HEALTH_PARAMETERS, {"health.still_ratio": 2.0})


@pytest.mark.parametrize("bad", ["depth:frozen", "depth:melted:1-2", "sonar:frozen:1-2", "lidar:black:1-2",
                                 "rgb:frozen:3-1"])
def test_bad_fault_schedules_are_rejected(bad):
    with pytest.raises(ValueError):
        parse_faults(bad)


def test_frozen_old_repeats_the_frame_from_two_seconds_before():
    injector = FaultInjector(parse_faults("rgb:frozen_old:3-5"))
    frames = {k: np.full((4, 4, 3), k, np.uint8) for k in range(60)}
    out = [injector.apply("rgb", frames[k], k / FPS) for k in range(60)]
    assert out[29][0, 0, 0] == 29 and out[30][0, 0, 0] == 10 and out[49][0, 0, 0] == 10
    assert out[50][0, 0, 0] == 50


@pytest.mark.parametrize("fault, kind", [("flat", "flat"), ("frozen", "frozen")])
def test_a_further_camera_of_any_name_is_treated_as_thermal_is(fault, kind):
    """A NIR camera (or a second thermal) is configuration, not code: its faults leave it out too."""
    health = ContentHealth()
    schedule = FaultInjector(parse_faults(f"nir:{fault}:2.0-3.0", (*SENSORS, "nir")), seed=1)
    for k in range(40):
        t = k / FPS
        arrays = scene(t)
        arrays["nir"] = arrays.pop("thermal")
        for sensor, array in arrays.items():
            verdict = health.observe(sensor, schedule.apply(sensor, array, t), stamp=t + 1.0)
        if k == 27:
            assert verdict.sensor == "nir" and verdict.fault.kind == kind and "nir" in health.excluded()
    assert "nir" not in health.excluded()
