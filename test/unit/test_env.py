"""The env wrapper's domain: two terminals with nothing exported meet; an export or --domain-id wins."""
import os
import subprocess
import sys

import pytest

from charm_ros.env import DEFAULT_DOMAIN_ID, ros_environment

LISTENER = """
import sys, time, rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node("listener")
got = []
node.create_subscription(String, "/two_terminals", lambda m: got.append(m.data), 10)
deadline = time.monotonic() + 30
while not got and time.monotonic() < deadline:
    rclpy.spin_once(node, timeout_sec=0.1)
print("got", got[:1], flush=True)
sys.exit(0 if got else 1)
"""
TALKER = """
import time, rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node("talker")
pub = node.create_publisher(String, "/two_terminals", 10)
for _ in range(300):
    pub.publish(String(data="hello"))
    rclpy.spin_once(node, timeout_sec=0.1)
"""


def test_domain_comes_from_the_flag_then_the_export_then_the_default():
    bare = {k: v for k, v in os.environ.items() if k != "ROS_DOMAIN_ID"}
    assert ros_environment(base=bare)["ROS_DOMAIN_ID"] == str(DEFAULT_DOMAIN_ID)
    assert ros_environment(base={**bare, "ROS_DOMAIN_ID": "42"})["ROS_DOMAIN_ID"] == "42"
    assert ros_environment(7, base={**bare, "ROS_DOMAIN_ID": "42"})["ROS_DOMAIN_ID"] == "7"


@pytest.mark.slow
def test_two_wrapper_invocations_with_nothing_exported_meet_over_dds():
    bare = {k: v for k, v in os.environ.items() if k != "ROS_DOMAIN_ID"}
    wrap = [sys.executable, "-m", "charm_ros.env", "--"]
    listener = subprocess.Popen(wrap + [sys.executable, "-c", LISTENER], env=bare, stdout=subprocess.PIPE, text=True)
    talker = subprocess.Popen(wrap + [sys.executable, "-c", TALKER], env=bare)
    try:
        out, _ = listener.communicate(timeout=60)
    finally:
        talker.kill()
        talker.wait()
    assert listener.returncode == 0 and "hello" in out
