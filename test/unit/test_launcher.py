"""The launcher without processes: the ROS arguments it builds, YAML launch files (arguments, substitutions,
`if`/`unless`), the command line. Starting and stopping nodes is test/integration/test_launcher_processes.py."""
import os
import textwrap

import pytest

from charm_ros.tools.launcher import NodeSpec, format_parameter, load_launch_yaml, parse_command_line
from support import ROOT


def test_ros_args_are_standard():
    spec = NodeSpec(command=["prog"], name="charm", namespace="robot1", params_files=["p.yaml"],
                    parameters={"rate": 2.5, "label": "42", "on": True}, remappings=[("~/in", "/cam/image")],
                    arguments=["--verbose"])
    assert spec.argv() == ["prog", "--verbose", "--ros-args", "-r", "__node:=charm", "-r", "__ns:=/robot1",
                           "--params-file", "p.yaml", "-p", "rate:=2.5", "-p", "label:='42'", "-p", "on:=true",
                           "-r", "~/in:=/cam/image"]
    assert NodeSpec(command=["prog"]).argv() == ["prog"]
    assert format_parameter([1, 2]) == "[1, 2]"


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


def test_launch_entries_honour_if_and_unless(tmp_path):
    path = tmp_path / "x.launch.yaml"
    path.write_text("""launch:
- arg: {name: viewer, default: "false"}
- node: {pkg: charm_ros, exec: charm_node, name: a}
- node: {pkg: charm_ros, exec: not_installed_anywhere, name: b, if: $(var viewer)}
- node: {pkg: charm_ros, exec: charm_node, name: c, unless: $(var viewer)}
""")
    assert [s.name for s in load_launch_yaml(path)[0]] == ["a", "c"], "a false `if` is not even resolved"
    with pytest.raises(FileNotFoundError, match="not_installed_anywhere"):
        load_launch_yaml(path, {"viewer": "true"})
    with pytest.raises(ValueError, match="expected true or false"):
        load_launch_yaml(path, {"viewer": "maybe"})
