"""The ament_python package is consistent: package.xml, entry points, launch files and their references."""
import ast
import importlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from support import ROOT

LAUNCH_PY = sorted((ROOT / "launch").glob("*.launch.py"))
LAUNCH_YAML = sorted((ROOT / "launch").glob("*.launch.yaml"))


def console_scripts() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    entries = ast.literal_eval(value)
                    return {e.split("=")[0].strip(): e.split("=")[1].strip() for e in entries}
    raise AssertionError("setup.py declares no console_scripts")


def test_package_xml_is_format3_ament_python_with_ros_dependencies():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "charm_ros"
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root.findall("exec_depend")}
    assert {"rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "launch_ros"} <= deps
    assert (ROOT / "resource" / "charm_ros").is_file()


DEPEND_TAGS = ("depend", "build_depend", "build_export_depend", "buildtool_depend", "exec_depend", "test_depend",
               "doc_depend")


def checked_dependency_names() -> tuple[str, dict[str, set[str]]]:
    """test/data/rosdep_keys.txt: the ros/rosdistro commit it was checked against, names per section."""
    text = (ROOT / "test" / "data" / "rosdep_keys.txt").read_text()
    commit = re.search(r"ros/rosdistro commit ([0-9a-f]{40})", text)
    assert commit, "the list names the ros/rosdistro commit its names were checked against"
    sections: dict[str, set[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], set())
        elif line:
            current.add(line.split()[0])
    return commit[1], sections


def test_every_package_xml_dependency_is_a_checked_rosdep_key_or_ros_package():
    root = ET.parse(ROOT / "package.xml").getroot()
    deps = {e.text.strip() for tag in DEPEND_TAGS for e in root.findall(tag)}
    _, sections = checked_dependency_names()
    assert set(sections) == {"rosdep", "ros"}
    unknown = sorted(deps - sections["rosdep"] - sections["ros"])
    assert not unknown, f"package.xml depends on {unknown}: not in test/data/rosdep_keys.txt (check ros/rosdistro)"
    assert {"python3-numpy", "python3-rosbags-pip"} <= deps and "python3-pytorch-pip" not in deps


def test_every_console_script_points_at_a_callable():
    scripts = console_scripts()
    assert "charm_launch" in scripts
    for name, target in scripts.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name


@pytest.mark.parametrize("launch_file", LAUNCH_PY, ids=lambda p: p.name)
def test_launch_py_compiles_and_references_real_executables_and_files(launch_file):
    source = launch_file.read_text()
    tree = compile(source, str(launch_file), "exec", ast.PyCF_ONLY_AST)
    assert "generate_launch_description" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    scripts = console_scripts()
    executables = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            kw = {k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)}
            if kw.get("package") == "charm_ros":
                executables.append(kw["executable"])
    assert executables, "launch file starts no node of this package"
    for exe in executables:
        assert exe in scripts, f"{launch_file.name} starts {exe!r}, not a console script of this package"
    for folder, filename in re.findall(r"['\"](config|launch)['\"],\s*['\"]([\w.\-]+)['\"]", source):
        assert (ROOT / folder / filename).is_file(), f"{launch_file.name} references missing {folder}/{filename}"


@pytest.mark.parametrize("launch_file", LAUNCH_YAML, ids=lambda p: p.name)
def test_launch_yaml_resolves(launch_file):
    from charm_ros.tools.launcher import load_launch_yaml

    specs, _ = load_launch_yaml(launch_file)
    assert specs
    for spec in specs:
        for params in spec.params_files:
            assert Path(params).is_file()
            assert "ros__parameters" in yaml.safe_dump(yaml.safe_load(Path(params).read_text()))


def test_data_files_ship_launch_config_and_models():
    source = (ROOT / "setup.py").read_text()
    for folder in ("launch", "config", "models"):
        assert f"share/{{PACKAGE}}/{folder}" in source


def test_rviz_config_shows_inputs_colour_mask_and_overlay():
    config = yaml.safe_load((ROOT / "config" / "charm.rviz").read_text())
    topics = {d["Topic"]["Value"] for d in config["Visualization Manager"]["Displays"]}
    assert {"charm/color_mask", "charm/overlay", "sim_rig/rgb/image", "sim_rig/lidar/points"} <= topics
    assert not [t for t in topics if t.startswith("/")], "absolute topics break namespace:= (rviz2 runs in it)"


@pytest.mark.parametrize("main, option, default", [
    ("charm_core.train.cli:eval_main", "--batch-size", "8"), ("charm_core.data.synth_cli:main", "--seed", "0"),
    ("charm_ros.tools.bag_record:main", "--fps", "10.0"), ("charm_ros.tools.bag_eval:main", "--reorder-window", "1.0"),
    ("charm_ros.tools.bag_export:main", "--every", "1"), ("charm_ros.tools.bag_play:main", "--rate", "1.0"),
    ("charm_ros.tools.launcher:main", "--timeout", None)])
def test_every_help_page_shows_the_defaults(main, option, default, capsys):
    import importlib

    module, func = main.split(":")
    with pytest.raises(SystemExit):
        getattr(importlib.import_module(module), func)(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert option in text
    if default is not None:
        options = text.split("options:", 1)[1]
        assert f"(default: {default})" in options.split(option, 1)[1].split(" --", 1)[0], text


def test_node_help_lists_topics(capsys):
    from charm_ros.node.charm_node import main

    assert main(["charm-node", "--help"]) == 0
    out = capsys.readouterr().out
    assert "subscribed topics:" in out and "~/rgb/image" in out and "~/lidar/points" in out
    assert "published topics:" in out and "~/mask" in out and "/diagnostics" in out


def test_python_launch_twins_take_the_same_arguments():
    """charm.launch.py had no rviz argument, sim_demo.launch.py no checkpoint argument (its YAML twin has one)."""
    import re

    def args(name: str) -> set[str]:
        text = (ROOT / "launch" / name).read_text()
        return set(re.findall(r'DeclareLaunchArgument\("(\w+)"', text)) | set(re.findall(r"arg: \{name: (\w+)", text))

    assert {"rviz", "checkpoint", "namespace"} <= args("charm.launch.py")
    assert {"checkpoint", "rviz", "duration", "dropouts"} <= args("sim_demo.launch.py")
    assert {"checkpoint", "duration", "dropouts"} <= args("sim_demo.launch.yaml")
    assert {"checkpoint", "rviz", "namespace", "rgb_topic", "lidar_topic"} <= args("charm.launch.yaml")
