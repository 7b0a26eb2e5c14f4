"""The node's lifecycle over real DDS: no output before activate, deactivate gives the model's memory back
and activate reloads it, ~/enable pauses and resumes inference, cleanup returns to unconfigured. How soon
the first mask follows activate or ~/enable is measured by bench/node_behaviour.py."""
from __future__ import annotations

import time

import numpy as np
import pytest
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_srvs.srv import SetBool

from charm_ros.tools.launcher import Launcher
from dds_helpers import Recorder, Seen, Statuses, call, node_on, publish, stop, subscribe, wait_until

BEST_EFFORT = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
# a mask already on its way when inference stopped may still arrive this long after: a loaded machine's delivery
SETTLE_S = 2.0
# activate and ~/enable true start inference within a second (bench/node_behaviour.py); this fails only
# a node that never starts
REACT_S = 15.0


@pytest.fixture(scope="module")
def b0_checkpoint(tmp_path_factory):
    """A random b0-size CHARM checkpoint: 24 MB of weights, enough to see them leave the process."""
    import torch

    from charm_core.checkpoint import save_checkpoint
    from charm_core.model import ModelConfig, build_model

    torch.manual_seed(0)
    config = ModelConfig(backbone="b0")
    path = tmp_path_factory.mktemp("ckpt") / "random_b0.safetensors"
    save_checkpoint(path, build_model(config).eval(), config, provenance={"input_size": [128, 128]})
    return path


def rss_mb(pid: int) -> float:
    line = next(line for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.mark.slow
def test_lifecycle_transitions_free_the_model_and_enable_pauses(frames_npz, b0_checkpoint, child_env, rclpy_node):
    rec = Recorder()
    subscribe(rclpy_node, rec)
    statuses = Statuses(rclpy_node)
    spec = node_on(b0_checkpoint, "/lc", ("rgb",))
    spec.parameters.update({"autostart": False, "model.input_size": [128, 128], "model.backend": "torch"})
    change = rclpy_node.create_client(ChangeState, "/charm/change_state")
    get = rclpy_node.create_client(GetState, "/charm/get_state")
    enable = rclpy_node.create_client(SetBool, "/charm/enable")
    model_mb = b0_checkpoint.stat().st_size / 2 ** 20

    def transition(transition_id: int) -> float:
        """Drive one transition; the time its response came."""
        assert call(change, ChangeState.Request(transition=Transition(id=transition_id))).success
        return time.monotonic()

    def state() -> str:
        return call(get, GetState.Request()).current_state.label

    frames = Seen(rclpy_node, Image, "/lc/rgb/image", BEST_EFFORT)   # what the node is given meanwhile

    def none_after(moment: float, wall: float, what: str) -> None:
        """Once ten more camera frames went out: no mask arrived later than SETTLE_S after `moment` (monotonic),
        and none is of a frame stamped after `wall` (the same moment on the publisher's clock)."""
        assert frames.wait(10, moment + SETTLE_S), f"the camera stopped publishing {what}"
        late = rec.masks_between(moment + SETTLE_S, np.inf)
        assert late == [], f"{len(late)} masks arrived {what}"
        stamped_after = [stamp for _, stamp, _ in rec.masks_between(moment, np.inf) if stamp > wall]
        assert stamped_after == [], f"frames stamped {what} were segmented: {stamped_after}"

    rgb = publish(frames_npz, "rgb", "/lc", child_env)
    try:
        with Launcher([spec], env=child_env) as launcher:
            pid = launcher.processes["charm"].pid
            assert state() == "unconfigured"
            assert statuses.first("pipeline", 0.0, 30, lambda lv, m: m.startswith("unconfigured: no inference"))
            transition(Transition.TRANSITION_CONFIGURE)
            assert state() == "inactive"
            assert statuses.first("pipeline", time.monotonic(), 15, lambda lv, m: m.startswith("inactive"))
            assert frames.wait(10, time.monotonic()), "the camera never published"
            assert rec.masks_between(0.0, np.inf) == [], "masks before activate"

            for round_ in (1, 2):  # the second activate reloads the model deactivate released
                active = transition(Transition.TRANSITION_ACTIVATE)
                assert rec.wait_masks(1, active, REACT_S), f"activate {round_}: no mask within {REACT_S:.0f} s"
                assert rec.wait_masks(10, active, 30)
                rss_active = rss_mb(pid)
                inactive, inactive_wall = transition(Transition.TRANSITION_DEACTIVATE), time.time()
                none_after(inactive, inactive_wall, f"after deactivate ({round_})")
                assert wait_until(lambda: rss_active - rss_mb(pid) >= model_mb / 2, 15), \
                    f"deactivate did not release the model's memory: RSS {rss_active:.0f} -> {rss_mb(pid):.0f} MB, " \
                    f"model {model_mb:.1f} MB"

            active = transition(Transition.TRANSITION_ACTIVATE)
            assert rec.wait_masks(3, active, 30)
            off = call(enable, SetBool.Request(data=False))
            paused_at, paused_wall = time.monotonic(), time.time()
            assert off.success and off.message == "inference paused"
            assert statuses.first("pipeline", paused_at, 15, lambda lv, m: m.startswith("paused by ~/enable"))
            none_after(paused_at, paused_wall, "after ~/enable false")
            call(enable, SetBool.Request(data=True))
            resumed_at = time.monotonic()
            assert rec.wait_masks(1, resumed_at, REACT_S), f"no mask within {REACT_S:.0f} s of ~/enable true"

            transition(Transition.TRANSITION_DEACTIVATE)
            transition(Transition.TRANSITION_CLEANUP)
            assert state() == "unconfigured"
            assert launcher.poll()["charm"] is None
    finally:
        stop([rgb])
