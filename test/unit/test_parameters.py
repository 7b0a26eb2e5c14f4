"""Parameters as users give them: whole numbers for floats, every mistake at once, no -p dropped."""
import signal
import subprocess

import pytest

from charm_ros.runtime.parameters import ConfigError, ParamSpec, check_all

SPECS = (ParamSpec("fps", 10.0, "rate", minimum=0.0), ParamSpec("size", [256, 256], "hw"),
         ParamSpec("scale", [1.0, 2.0], "floats"), ParamSpec("name", "x", "text"), ParamSpec("on", True, "flag"))


def test_whole_numbers_are_floats_and_lists_are_checked_element_by_element():
    values = check_all(SPECS, {"fps": 40, "scale": [1, 2.5]})
    assert values["fps"] == 40.0 and isinstance(values["fps"], float)
    assert values["scale"] == [1.0, 2.5] and all(isinstance(x, float) for x in values["scale"])
    with pytest.raises(ConfigError, match=r"size must be a list of ints"):
        check_all(SPECS, {"size": ["a", "b"]})
    with pytest.raises(ConfigError, match=r"on must be a bool"):
        check_all(SPECS, {"on": 1})


def test_every_bad_value_is_reported_in_one_error():
    with pytest.raises(ConfigError) as err:
        check_all(SPECS, {"fps": "fast", "size": [1.5, 2], "name": 3, "on": "yes"})
    text = str(err.value)
    assert text.startswith("4 parameter errors:")
    for name in ("fps", "size", "name", "on"):
        assert f"parameter {name} " in text


def run(executable: str, *ros_args: str, env=None, timeout=60) -> subprocess.CompletedProcess:
    from charm_ros.tools.launcher import resolve_executable
    return subprocess.run([resolve_executable(executable), "--ros-args", *ros_args], capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_nodes_take_whole_numbers_for_floats(child_env):
    """`-p fps:=5` and `duration:=40` (launch_ros passes an int) crashed nodes with a 23-line traceback."""
    rig = run("charm_sim_rig", "-p", "fps:=5", "-p", "duration:=1", env=child_env)
    assert rig.returncode == 0, rig.stderr
    from charm_ros.tools.launcher import resolve_executable
    node = subprocess.Popen([resolve_executable("charm_node"), "--ros-args", "-p", "sync.timeout:=1"],
                            stderr=subprocess.PIPE, text=True, env=child_env)
    try:
        lines = []
        for line in node.stderr:  # the start-up line comes after every parameter was taken
            lines.append(line)
            if "CHARM on" in line or "cannot start" in line:
                break
    finally:
        node.send_signal(signal.SIGINT)
        err = "".join(lines) + node.communicate(timeout=30)[1]
    assert "CHARM on" in err, err
    assert "Traceback" not in err and "InvalidParameterType" not in err


@pytest.mark.slow
def test_bad_parameters_exit_2_with_every_error_and_no_traceback(child_env, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    sync:\n      max_skew: slow\n      timeout: -1\n"
                   "    model:\n      input_size: ['a', 'b']\n    outputs:\n      overlay_alpha: 7\n")
    done = run("charm_node", "--params-file", str(bad), env=child_env)
    assert done.returncode == 2 and "Traceback" not in done.stderr + done.stdout
    out = done.stderr + done.stdout
    assert "4 parameter errors" in out
    for name in ("sync.max_skew", "sync.timeout", "model.input_size", "outputs.overlay_alpha"):
        assert name in out


@pytest.mark.slow
def test_a_p_override_rcl_drops_is_an_error(child_env):
    from charm_ros.paths import share_path
    done = run("charm_node", "--params-file", str(share_path("config", "charm.param.yaml")),
               "-p", "sync.max_skew:=fast", env=child_env)
    out = done.stderr + done.stdout
    assert done.returncode == 2 and "Traceback" not in out
    assert "-p sync.max_skew:=fast was not applied" in out


def test_a_string_for_a_number_at_run_time_is_refused():
    spec = ParamSpec("sync.timeout", 0.1, "", dynamic=True, minimum=0.0)
    assert spec.check(1) == 1.0
    with pytest.raises(ConfigError, match="must be a float"):
        spec.check("fast")
