"""Session setup for both folders: DDS confined to this machine (before anything imports rclpy), no stale
shared-memory files, and the model fixtures unit and integration tests share. The DDS fixtures (a ROS domain
per test, node processes, an in-process probe node) are in integration/conftest.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from charm_ros import env as ros_env

# Before anything imports rclpy: confine DDS and use the shipped Fast DDS profile for this process.
ros_env.apply()


def pytest_sessionstart(session: pytest.Session) -> None:
    ros_env.clear_stale_shm()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    ros_env.clear_stale_shm()


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
