"""The env wrapper's domain: an export or --domain-id wins over the default (two terminals meeting over DDS:
test/integration/test_env_wrapper.py)."""
import os

from charm_ros.env import DEFAULT_DOMAIN_ID, ros_environment

def test_domain_comes_from_the_flag_then_the_export_then_the_default():
    bare = {k: v for k, v in os.environ.items() if k != "ROS_DOMAIN_ID"}
    assert ros_environment(base=bare)["ROS_DOMAIN_ID"] == str(DEFAULT_DOMAIN_ID)
    assert ros_environment(base={**bare, "ROS_DOMAIN_ID": "42"})["ROS_DOMAIN_ID"] == "42"
    assert ros_environment(7, base={**bare, "ROS_DOMAIN_ID": "42"})["ROS_DOMAIN_ID"] == "7"
