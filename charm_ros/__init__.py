"""charm_ros: the rclpy node and ROS tools (launcher, synthetic sensor rig, rosbag evaluation).

Thin by design: it adapts ROS messages and parameters to charm_core, where the logic lives.
"""
__version__ = "0.1.0"
