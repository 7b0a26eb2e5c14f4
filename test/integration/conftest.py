"""DDS fixtures: a ROS domain of its own per test, helper processes that are gone when the test ends, an
in-process probe node, the synthetic frames the sensor publishers replay. Every test collected here is
marked `dds`."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from charm_ros import env as ros_env

HERE = Path(__file__).resolve().parent
_domains = itertools.count()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything in this folder talks over DDS or starts ROS processes: `-m "not dds"` leaves it out."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.dds)


@pytest.fixture
def domain_id() -> int:
    """A ROS_DOMAIN_ID of its own for each test, so a straggler of one test cannot feed the next."""
    return ros_env.pick_domain_id(os.getpid() + 7 * next(_domains) + 1)


@pytest.fixture
def child_env(domain_id: int) -> dict[str, str]:
    """Environment for node subprocesses of this test."""
    return ros_env.ros_environment(domain_id)


class Processes:
    """Starts helper processes and guarantees they are gone when the test ends."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.procs: list[subprocess.Popen] = []

    def python(self, script: str | Path, *args: str, **popen) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, str(script), *args], env=self.env,
                                start_new_session=True, **popen)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 5
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def processes(child_env: dict[str, str]):
    procs = Processes(child_env)
    yield procs
    procs.stop_all()


@pytest.fixture
def rclpy_node(domain_id: int):
    """An in-process rclpy node on this test's domain, spun by a background executor."""
    import threading

    import rclpy

    from charm_ros.node.host import TolerantExecutor

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = rclpy.create_node("test_probe", context=context)
    executor = TolerantExecutor(lambda topic, error: print(f"test probe dropped a message on {topic}: {error}"),
                                context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield node
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)
    thread.join(timeout=5)


@pytest.fixture(scope="session")
def frames_npz(tmp_path_factory) -> Path:
    """20 consecutive frames of the synthetic drive, rendered once for every sensor_publisher."""
    from charm_core.data.synthetic import World

    world = World(seed=21, size_hw=(256, 256))
    frames = list(world.frames(20))
    path = tmp_path_factory.mktemp("frames") / "frames.npz"
    np.savez(path, rgb=np.stack([f.rgb for f in frames]), depth=np.stack([f.depth for f in frames]),
             event=np.stack([f.event for f in frames]), K=frames[0].K,
             **{f"lidar_{i}": f.lidar for i, f in enumerate(frames)})
    return path
