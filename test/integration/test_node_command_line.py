"""The nodes' command lines as users type them, each node a real process: whole numbers for floats, every bad
parameter at once with exit 2 and no traceback, no -p dropped, --help lists the parameters and a stray
argument is refused."""
import signal
import subprocess

import pytest

from charm_ros.paths import share_path
from charm_ros.tools.launcher import resolve_executable


def run(executable: str, *ros_args: str, env=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([resolve_executable(executable), "--ros-args", *ros_args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_nodes_take_whole_numbers_for_floats(child_env):
    """`-p fps:=5` and `duration:=40` (launch_ros passes an int) crashed nodes with a 23-line traceback."""
    rig = run("charm_sim_rig", "-p", "fps:=5", "-p", "duration:=1", env=child_env)
    assert rig.returncode == 0, rig.stderr
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


def test_a_p_override_rcl_drops_is_an_error(child_env):
    done = run("charm_node", "--params-file", str(share_path("config", "charm.param.yaml")),
               "-p", "sync.max_skew:=fast", env=child_env)
    out = done.stderr + done.stdout
    assert done.returncode == 2 and "Traceback" not in out
    assert "-p sync.max_skew:=fast was not applied" in out


@pytest.mark.parametrize("executable, expected", [
    ("charm_node", ["lidar.intensity_field", "* default \"auto\"", "model.device", "one of auto, cpu, cuda"]),
    ("charm_sim_rig", ["depth.rate", "0 = fps", "dropouts"]),
    ("charm_demo_report", ["output_dir", "default \"out/demo\""]),
])
def test_help_lists_the_parameters_and_stray_arguments_are_refused(executable, expected, child_env):
    """Without ros2cli there is no `ros2 param describe`: --help is where a user finds the parameters. It
    and a stray argument both return at once, before any node starts (a stray one used to be ignored)."""
    exe = resolve_executable(executable)
    shown = subprocess.run([exe, "--ros-args", "-p", "x:=1", "--", "--help"], env=child_env, capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"usage: {executable} [--ros-args")
    for text in expected:
        assert text in shown.stdout
    refused = subprocess.run([exe, "--frobnicate", "--ros-args", "-p", "x:=1"], env=child_env, capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 2
    assert f"{executable}: unrecognized arguments: --frobnicate" in refused.stderr
