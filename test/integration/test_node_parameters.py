"""The node's parameters over DDS: what `ros2 param set` does (a valid palette recolours, a bad value or a
read-only parameter is refused with the reason) and what `ros2 param describe` shows (ranges and choices)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from rcl_interfaces.srv import DescribeParameters
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from charm_ros.runtime.node_config import PARAMETERS
from charm_ros.tools.launcher import Launcher
from dds_helpers import call, node_on, publish, stop, wait_until


def test_parameters_change_at_run_time_through_the_parameter_service(frames_npz, random_checkpoint, child_env,
                                                                     rclpy_node):
    """What `ros2 param set` does: a valid palette recolours ~/color_mask and re-latches ~/labels; a bad
    one, or a read-only parameter, is refused with the reason."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    latest: dict[str, object] = {}
    rclpy_node.create_subscription(String, "/charm/labels", lambda m: latest.__setitem__("labels", json.loads(m.data)),
                                   QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                              durability=DurabilityPolicy.TRANSIENT_LOCAL))
    rclpy_node.create_subscription(Image, "/charm/color_mask", lambda m: latest.__setitem__("colour", m),
                                   QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE))
    client = rclpy_node.create_client(SetParameters, "/charm/set_parameters")

    def set_param(name: str, value) -> tuple[bool, str]:
        pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value) if isinstance(value, str) \
            else ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
        result = call(client, SetParameters.Request(parameters=[Parameter(name=name, value=pv)])).results[0]
        return result.successful, result.reason

    rgb = publish(frames_npz, "rgb", "/pal", child_env)
    try:
        with Launcher([node_on(random_checkpoint, "/pal", ("rgb",))], env=child_env):
            assert wait_until(lambda: "labels" in latest and "colour" in latest, 60), "no ~/labels or ~/color_mask"
            classes = len(latest["labels"]["classes"])
            assert set_param("outputs.palette", " ".join(["#ff0000"] * classes)) == (True, "")
            assert wait_until(lambda: latest["labels"]["palette"] == [[255, 0, 0]] * classes, 30)

            def all_red() -> bool:   # a mask drawn before the change may still be on its way: wait for a new one
                colours = np.frombuffer(bytes(latest["colour"].data), np.uint8).reshape(-1, 3)
                return bool((colours == [255, 0, 0]).all())
            assert wait_until(all_red, 30), "~/color_mask never drawn with the new palette"
            ok, reason = set_param("outputs.palette", "#ff0000 red")
            assert not ok and "outputs.palette entry 1 is 'red'" in reason
            ok, reason = set_param("outputs.palette", "#00ff00")
            assert not ok and f"1 colours, the checkpoint {classes} classes" in reason
            ok, reason = set_param("rgb.enabled", False)
            assert not ok and "read-only" in reason
            assert latest["labels"]["palette"] == [[255, 0, 0]] * classes, "a refused change changes nothing"
    finally:
        stop([rgb])


def test_descriptors_carry_the_range_and_choices_of_every_bounded_parameter(random_checkpoint, child_env,
                                                                            rclpy_node):
    """What `ros2 param describe /charm NAME` shows, read over DDS: ranges and choices come from the specs."""
    spec = node_on(random_checkpoint, "/desc", ("rgb",))
    spec.parameters["autostart"] = False  # parameters are declared at start; no model is needed
    bounded = [p for p in PARAMETERS if p.choices or p.minimum is not None or p.maximum is not None]
    assert len(bounded) > 10
    describe = rclpy_node.create_client(DescribeParameters, "/charm/describe_parameters")
    with Launcher([spec], env=child_env):
        answer = call(describe, DescribeParameters.Request(names=[p.name for p in bounded]))
    assert [d.name for d in answer.descriptors] == [p.name for p in bounded]
    for p, d in zip(bounded, answer.descriptors):
        assert d.description == p.description and d.read_only == (not p.dynamic), p.name
        for choice in p.choices:
            assert choice in d.additional_constraints, p.name
        if p.minimum is None and p.maximum is None:
            continue
        ranges = d.integer_range if isinstance(p.default, int) else d.floating_point_range
        assert len(ranges) == 1, p.name
        if p.minimum is not None:
            assert ranges[0].from_value == pytest.approx(p.minimum), p.name
        if p.maximum is not None:
            assert ranges[0].to_value == pytest.approx(p.maximum), p.name
