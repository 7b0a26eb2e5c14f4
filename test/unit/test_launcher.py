"""The launcher starts nodes with remaps, names and params files, and leaves no process behind."""
import os
import signal
import sys
import textwrap
import threading
import time

import pytest
import yaml
from std_msgs.msg import String

from charm_ros.tools.launcher import Launcher, NodeSpec, format_parameter, load_launch_yaml, parse_command_line
from conftest import NODES, ROOT


def test_ros_args_are_standard():
    spec = NodeSpec(command=["prog"], name="charm", namespace="robot1", params_files=["p.yaml"],
                    parameters={"rate": 2.5, "label": "42", "on": True}, remappings=[("~/in", "/cam/image")],
                    arguments=["--verbose"])
    assert spec.argv() == ["prog", "--verbose", "--ros-args", "-r", "__node:=charm", "-r", "__ns:=/robot1",
                           "--params-file", "p.yaml", "-p", "rate:=2.5", "-p", "label:='42'", "-p", "on:=true",
                           "-r", "~/in:=/cam/image"]
    assert NodeSpec(command=["prog"]).argv() == ["prog"]
    assert format_parameter([1, 2]) == "[1, 2]"


@pytest.mark.slow
def test_two_nodes_with_remaps_and_params_file(tmp_path, child_env, rclpy_node):
    params = tmp_path / "talker.yaml"
    params.write_text(yaml.safe_dump({"talker": {"ros__parameters": {"source": True, "message": "from-file"}}}))
    script = str(NODES / "relay.py")
    specs = [
        NodeSpec(command=[sys.executable, script], name="talker", params_files=[str(params)],
                 remappings=[("output", "/wire")]),
        NodeSpec(command=[sys.executable, script], name="relay2", namespace="ns",
                 parameters={"prefix": "relayed:"}, remappings=[("input", "/wire"), ("output", "/final")]),
    ]
    received: list[str] = []
    got = threading.Event()

    def on_final(msg: String) -> None:
        received.append(msg.data)
        got.set()

    rclpy_node.create_subscription(String, "/final", on_final, 10)
    launcher = Launcher(specs, env=child_env)
    with launcher:
        assert got.wait(20), "nothing arrived on /final"
        names = set()
        deadline = time.monotonic() + 5
        while not {("talker", "/"), ("relay2", "/ns")} <= names and time.monotonic() < deadline:
            names = set(rclpy_node.get_node_names_and_namespaces())
            time.sleep(0.1)
        pids = [p.pid for p in launcher.processes.values()]
    # the params file reached the talker, `-p` reached the relay, and both remaps took effect
    assert received[0] == "relayed:from-file"
    assert {("talker", "/"), ("relay2", "/ns")} <= names
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), f"process {pid} survived the launcher"
    assert all(code is not None for code in launcher.poll().values())


def test_yaml_launch_file_resolves_args_and_substitutions(tmp_path):
    launch = tmp_path / "x.launch.yaml"
    launch.write_text(textwrap.dedent("""
        launch:
        - arg: {name: ns, default: robot}
        - arg: {name: topic, default: /cam/$(var ns)}
        - node:
            pkg: charm_ros
            exec: charm_launch
            name: charm
            namespace: $(var ns)
            on_exit: shutdown
            param:
            - from: $(find-pkg-share charm_ros)/config/fastdds.xml
            - {name: rate, value: "2.5"}
            remap:
            - {from: "~/rgb/image", to: $(var topic)}
    """))
    specs, args = load_launch_yaml(launch, {"ns": "r2"})
    assert args == {"ns": "r2", "topic": "/cam/r2"}
    (spec,) = specs
    assert spec.command[0].endswith("charm_launch") and os.access(spec.command[0], os.X_OK)
    assert spec.namespace == "r2" and spec.name == "charm" and spec.shutdown_on_exit
    assert spec.params_files == [str(ROOT / "config" / "fastdds.xml")]
    assert spec.parameters == {"rate": 2.5}
    assert spec.remappings == [("~/rgb/image", "/cam/r2")]
    with pytest.raises(ValueError, match="unknown launch arguments"):
        load_launch_yaml(launch, {"nope": "1"})


def test_command_line_takes_launch_arguments_after_options():
    """The README's `make demo DEMO_ARGS="duration:=60.0 dropouts:=rgb:10-20"` puts them after --timeout."""
    demo = str(ROOT / "launch" / "sim_demo.launch.yaml")
    args, specs = parse_command_line([demo, "--timeout", "150", "duration:=60.0", "dropouts:=rgb:10-20"])
    assert args.timeout == 150.0
    report = next(s for s in specs if s.name == "demo_report")
    assert report.parameters["duration"] == 60.0 and report.parameters["dropouts"] == "rgb:10-20"
    with pytest.raises(SystemExit):
        parse_command_line([demo, "--timeout", "1", "duration=60"])


@pytest.mark.slow
def test_cli_forwards_sigint_and_stops_every_node(tmp_path, child_env):
    import subprocess

    launch = tmp_path / "two.launch.yaml"
    relay = f"{sys.executable} {NODES / 'relay.py'}"
    launch.write_text(yaml.safe_dump({"launch": [
        {"executable": {"cmd": f"{relay} --ros-args -r __node:=one -p source:=true", "name": "one"}},
        {"executable": {"cmd": f"{relay} --ros-args -r __node:=two", "name": "two"}},
    ]}))
    proc = subprocess.Popen([sys.executable, "-m", "charm_ros.tools.launcher", str(launch)], env=child_env,
                            stdout=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    assert first.startswith("[launcher] started one, two")
    children = _children(proc.pid)
    assert len(children) == 2
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert all(not os.path.exists(f"/proc/{pid}") for pid in children)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_spinning_node_exits_cleanly_on_a_stop_signal(child_env, signum):
    import subprocess

    proc = subprocess.Popen([sys.executable, str(NODES / "relay.py"), "--ros-args", "-p", "source:=true"],
                            env=child_env, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=5)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def _children(pid: int) -> list[int]:
    deadline = time.monotonic() + 5
    found: list[int] = []
    while time.monotonic() < deadline and len(found) < 2:
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as stat:
                        if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                            found.append(int(entry))
                except OSError:
                    pass
        time.sleep(0.05)
    return found


@pytest.mark.slow
def test_a_timeout_says_so_and_exits_non_zero(tmp_path, child_env):
    """`make demo DEMO_TIMEOUT=12` ended with no table, no message and exit 0."""
    import subprocess

    launch = tmp_path / "one.launch.yaml"
    launch.write_text(yaml.safe_dump({"launch": [
        {"executable": {"cmd": f"{sys.executable} {NODES / 'relay.py'} --ros-args -r __node:=one", "name": "one"}}]}))
    done = subprocess.run([sys.executable, "-m", "charm_ros.tools.launcher", str(launch), "--timeout", "3"],
                          env=child_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 124, done.stdout + done.stderr
    assert "--timeout 3 s reached" in done.stderr


def test_the_node_launch_file_takes_topics_and_a_checkpoint_as_arguments(monkeypatch):
    """pip installs had to type six -r remaps; the YAML node launch takes them as launch arguments."""
    path = ROOT / "launch" / "charm.launch.yaml"
    specs, _ = load_launch_yaml(path, {"rgb_topic": "/cam/color/image_raw", "lidar_topic": "/velodyne_points",
                                       "checkpoint": "/models/mine.safetensors", "namespace": "robot1"})
    assert [s.name for s in specs] == ["charm"], "rviz is off by default"
    node = specs[0]
    assert ("~/rgb/image", "/cam/color/image_raw") in node.remappings
    assert ("~/lidar/points", "/velodyne_points") in node.remappings
    assert node.parameters["model.checkpoint"] == "/models/mine.safetensors" and node.namespace == "robot1"
    import charm_ros.tools.launcher as launcher

    real = launcher.resolve_executable
    monkeypatch.setattr(launcher, "resolve_executable",  # rviz2 is no wheel: stand in for a ROS install's
                        lambda exe, package="charm_ros": "/opt/ros/bin/rviz2" if exe == "rviz2" else real(exe, package))
    with_rviz, _ = load_launch_yaml(path, {"rviz": "true", "namespace": "robot1"})
    assert [(s.name, s.namespace) for s in with_rviz] == [("charm", "robot1"), ("rviz2", "robot1")]
