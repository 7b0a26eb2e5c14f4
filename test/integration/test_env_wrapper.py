"""The env wrapper over DDS: two terminals with nothing exported meet on the default domain."""
import os
import subprocess
import sys

LISTENER = """
import sys, time, rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node("listener")
got = []
node.create_subscription(String, "/two_terminals", lambda m: got.append(m.data), 10)
deadline = time.monotonic() + 60
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
for _ in range(900):  # until the test kills it
    pub.publish(String(data="hello"))
    rclpy.spin_once(node, timeout_sec=0.1)
"""


def test_two_wrapper_invocations_with_nothing_exported_meet_over_dds():
    bare = {k: v for k, v in os.environ.items() if k != "ROS_DOMAIN_ID"}
    wrap = [sys.executable, "-m", "charm_ros.env", "--"]
    listener = subprocess.Popen(wrap + [sys.executable, "-c", LISTENER], env=bare, stdout=subprocess.PIPE, text=True)
    talker = subprocess.Popen(wrap + [sys.executable, "-c", TALKER], env=bare)
    try:
        out, _ = listener.communicate(timeout=90)
    finally:
        talker.kill()
        talker.wait()
    assert listener.returncode == 0 and "hello" in out
