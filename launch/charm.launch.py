"""ros2 launch charm_ros charm.launch.py [namespace:=robot1] [params_file:=...] [use_sim_time:=true]
[rgb_topic:=/camera/color/image_raw] [rgb_info_topic:=...] [depth_topic:=...] [depth_info_topic:=...]
[event_topic:=...] [lidar_topic:=...]"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

TOPICS = {
    "rgb_topic": "~/rgb/image",
    "rgb_info_topic": "~/rgb/camera_info",
    "depth_topic": "~/depth/image",
    "depth_info_topic": "~/depth/camera_info",
    "event_topic": "~/event/image",
    "lidar_topic": "~/lidar/points",
}


def generate_launch_description():
    share = get_package_share_directory("charm_ros")
    args = [
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "charm.param.yaml"),
                              description="node parameters (YAML)"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
    ] + [DeclareLaunchArgument(name, default_value=default, description=f"remap of {default}")
         for name, default in TOPICS.items()]
    node = Node(
        package="charm_ros",
        executable="charm_node",
        name="charm",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), {"use_sim_time": LaunchConfiguration("use_sim_time")}],
        remappings=[(default, LaunchConfiguration(name)) for name, default in TOPICS.items()],
        output="screen",
        emulate_tty=True,
    )
    return LaunchDescription(args + [node])
