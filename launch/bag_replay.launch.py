"""ros2 launch charm_ros bag_replay.launch.py bag:=/path/to/bag [rate:=1.0] [params_file:=...]
[rgb_topic:=...] [rgb_info_topic:=...] [depth_topic:=...] [depth_info_topic:=...] [event_topic:=...]
[lidar_topic:=...]

Live replay: `ros2 bag play --clock` with the charm node under use_sim_time, so the node's clock,
staleness and latency follow the bag. Topic defaults are the synthetic rig's (charm-bag-record).
For offline scoring without a ROS graph use `charm-bag-eval` instead."""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

TOPICS = {
    "rgb_topic": ("~/rgb/image", "/sim_rig/rgb/image"),
    "rgb_info_topic": ("~/rgb/camera_info", "/sim_rig/rgb/camera_info"),
    "depth_topic": ("~/depth/image", "/sim_rig/depth/image"),
    "depth_info_topic": ("~/depth/camera_info", "/sim_rig/depth/camera_info"),
    "event_topic": ("~/event/image", "/sim_rig/event/image"),
    "lidar_topic": ("~/lidar/points", "/sim_rig/lidar/points"),
}


def generate_launch_description():
    share = get_package_share_directory("charm_ros")
    args = [
        DeclareLaunchArgument("bag", description="rosbag2 directory to replay"),
        DeclareLaunchArgument("rate", default_value="1.0"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "charm.param.yaml")),
    ] + [DeclareLaunchArgument(name, default_value=default) for name, (_, default) in TOPICS.items()]
    play = ExecuteProcess(cmd=["ros2", "bag", "play", LaunchConfiguration("bag"), "--clock",
                               "--rate", LaunchConfiguration("rate")], output="screen")
    node = Node(package="charm_ros", executable="charm-node", name="charm",
                parameters=[LaunchConfiguration("params_file"), {"use_sim_time": True}],
                remappings=[(private, LaunchConfiguration(name)) for name, (private, _) in TOPICS.items()],
                output="screen", emulate_tty=True)
    return LaunchDescription(args + [node, play])
