"""The launcher with real node processes: remaps, names and params files reach them, SIGINT reaches every
node, a stop signal ends a spinning node cleanly, --timeout says so, and no process is left behind."""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml
from std_msgs.msg import String

from charm_ros.tools.launcher import Launcher, NodeSpec
from dds_helpers import NODES, wait_until


def node_names(rclpy_node) -> set[tuple[str, str]]:
    return set(rclpy_node.get_node_names_and_namespaces())


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
        assert got.wait(60), "nothing arrived on /final"
        names = wait_until(lambda: {("talker", "/"), ("relay2", "/ns")} <= node_names(rclpy_node), 30)
        pids = [p.pid for p in launcher.processes.values()]
    # the params file reached the talker, `-p` reached the relay, and both remaps took effect
    assert received[0] == "relayed:from-file"
    assert names, f"talker and /ns/relay2 not in the graph: {sorted(node_names(rclpy_node))}"
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), f"process {pid} survived the launcher"
    assert all(code is not None for code in launcher.poll().values())


def test_cli_forwards_sigint_and_stops_every_node(tmp_path, child_env, rclpy_node):
    launch = tmp_path / "two.launch.yaml"
    relay = f"{sys.executable} {NODES / 'relay.py'}"
    launch.write_text(yaml.safe_dump({"launch": [
        {"executable": {"cmd": f"{relay} --ros-args -r __node:=one -p source:=true", "name": "one"}},
        {"executable": {"cmd": f"{relay} --ros-args -r __node:=two", "name": "two"}},
    ]}))
    proc = subprocess.Popen([sys.executable, "-m", "charm_ros.tools.launcher", str(launch)], env=child_env,
                            stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("[launcher] started one, two")
        children = _children(proc.pid)
        assert len(children) == 2
        # both nodes up (in the graph), so that SIGINT reaches spinning nodes, not interpreters still importing
        assert wait_until(lambda: {("one", "/"), ("two", "/")} <= node_names(rclpy_node), 60), \
            sorted(node_names(rclpy_node))
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert all(not os.path.exists(f"/proc/{pid}") for pid in children)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_spinning_node_exits_cleanly_on_a_stop_signal(child_env, rclpy_node, signum):
    proc = subprocess.Popen([sys.executable, str(NODES / "relay.py"), "--ros-args", "-p", "source:=true"],
                            env=child_env, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: ("relay", "/") in node_names(rclpy_node) or proc.poll() is not None, 60)
        if proc.poll() is not None or ("relay", "/") not in node_names(rclpy_node):
            proc.kill()
            pytest.fail(f"the node never came up: {proc.communicate()[1]}")
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def _children(pid: int) -> list[int]:
    deadline = time.monotonic() + 30
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


def test_a_timeout_says_so_and_exits_non_zero(tmp_path, child_env):
    """`make demo DEMO_TIMEOUT=12` ended with no table, no message and exit 0."""
    launch = tmp_path / "one.launch.yaml"
    launch.write_text(yaml.safe_dump({"launch": [
        {"executable": {"cmd": f"{sys.executable} {NODES / 'relay.py'} --ros-args -r __node:=one", "name": "one"}}]}))
    done = subprocess.run([sys.executable, "-m", "charm_ros.tools.launcher", str(launch), "--timeout", "3"],
                          env=child_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 124, done.stdout + done.stderr
    assert "--timeout 3 s reached" in done.stderr
