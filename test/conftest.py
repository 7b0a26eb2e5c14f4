"""Test session setup: DDS confined to this machine, a distinct ROS domain per test, no stale SHM."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from charm_ros import env as ros_env

ROOT = Path(__file__).resolve().parents[1]
NODES = Path(__file__).resolve().parent / "nodes"

# Before anything imports rclpy: confine DDS and use the shipped Fast DDS profile for this process.
ros_env.apply()
_domains = itertools.count()


def pytest_sessionstart(session: pytest.Session) -> None:
    ros_env.clear_stale_shm()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    ros_env.clear_stale_shm()


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
def small_dataset(tmp_path_factory) -> Path:
    """A tiny DELIVER-layout synthetic set (64x64) for trainer, evaluation and bag tests."""
    from charm_core.data.synthetic.export import write_dataset

    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, {"train": 16, "val": 8}, (64, 64), seed=3, workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised tiny CHARM checkpoint (for plumbing tests that do not judge accuracy)."""
    import torch

    from charm_core.checkpoint import save_checkpoint
    from charm_core.model import ModelConfig, build_model

    torch.manual_seed(0)
    config = ModelConfig(backbone="tiny")
    path = tmp_path_factory.mktemp("ckpt") / "random_tiny.safetensors"
    save_checkpoint(path, build_model(config).eval(), config, provenance={"input_size": [256, 256]})
    return path


@pytest.fixture(scope="session")
def random_checkpoint5(tmp_path_factory) -> Path:
    """random_checkpoint's twin on five modalities: DELIVER's four and a thermal camera."""
    import torch

    from charm_core.checkpoint import save_checkpoint
    from charm_core.model import ModelConfig, build_model

    torch.manual_seed(0)
    config = ModelConfig(backbone="tiny", modalities=("rgb", "depth", "event", "lidar", "thermal"))
    path = tmp_path_factory.mktemp("ckpt5") / "random_tiny_thermal.safetensors"
    save_checkpoint(path, build_model(config).eval(), config, provenance={"input_size": [256, 256]})
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small models gain nothing from threads; spinning OpenMP threads on a loaded 2-core machine
    make them far slower. Modules that time or run many small models use this."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
