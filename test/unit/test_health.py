"""Diagnostics levels and messages (runtime/health.py): QoS warnings set the levels, a paused or idle node
says so."""
from charm_ros.runtime.health import ERROR, OK, WARN, ModalityHealth, PipelineHealth, assess, idle_reports


def _health(alive, qos=None, paused=False, outputs=None):
    mods = [ModalityHealth(m, m in alive, 0.05 if m in alive else None, 10.0, 10, 10, 0, 0,
                           qos_warning=(qos or {}).get(m, "")) for m in ("rgb", "lidar")]
    return PipelineHealth(enabled=("rgb", "lidar"), modalities=mods, subset=tuple(alive), frames=0, frames_dropped=0,
                          frames_skipped=0, encode_ms=None, inference_ms=None, end_to_end_ms=None, output_rate_hz=0.0,
                          paused=paused, output_warnings=outputs or {})


def test_qos_warnings_set_the_levels():
    reports = assess(_health((), qos={"rgb": "/cam: reliability ..."}))
    assert reports[0].level == ERROR and reports[0].message == "no sensor input alive (rgb: see the sensor status)"
    assert reports[1].level == WARN and reports[1].message == "no message yet: /cam: reliability ..."
    assert reports[1].values["qos_warning"] == "/cam: reliability ..."
    alive = assess(_health(("rgb", "lidar"), qos={"lidar": "/pts: a second publisher ..."}))
    assert alive[0].level == WARN and "lidar: see the sensor status" in alive[0].message
    assert alive[2].level == WARN and alive[2].message.startswith("alive: /pts")
    assert assess(_health(("rgb", "lidar")))[-1].level == OK
    out = assess(_health(("rgb", "lidar"), outputs={"/charm/mask": "/charm/mask: /rviz subscribes reliable ..."}))
    assert out[0].level == OK and out[-1].name == "charm: outputs" and out[-1].level == WARN
    assert "/charm/mask" in out[-1].message


def test_paused_and_idle_nodes_say_so():
    paused = assess(_health(("rgb",), paused=True))
    assert paused[0].level == OK and paused[0].message.startswith("paused by ~/enable")
    assert paused[0].values["enabled"] == "false" and paused[0].values["lifecycle_state"] == "active"
    idle = idle_reports("inactive", {})
    assert idle[0].level == OK and idle[0].message.startswith("inactive: no inference")
    assert idle[0].values == {"lifecycle_state": "inactive"} and idle[1].name == "charm: outputs"
