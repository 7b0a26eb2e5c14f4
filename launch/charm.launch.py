"""ros2 launch charm_ros charm.launch.py [namespace:=robot1] [params_file:=...] [use_sim_time:=true]
[rgb_topic:=/camera/color/image_raw] [rgb_info_topic:=...] [depth_topic:=...] [depth_info_topic:=...]
[event_topic:=...] [lidar_topic:=...] [checkpoint:=...] [autostart:=true] [rviz:=false] [foxglove:=false]
[foxglove_port:=8765]

autostart:=false leaves the (lifecycle) node unconfigured for a lifecycle manager; foxglove:=true
streams its inputs and outputs to Foxglove at ws://127.0.0.1:<foxglove_port>."""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
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
        DeclareLaunchArgument("checkpoint", default_value="models/charm_tiny_synthetic.safetensors",
                              description="model checkpoint (absolute, or under the package share directory)"),
        DeclareLaunchArgument("autostart", default_value="true", description="configure + activate at start"),
        DeclareLaunchArgument("rviz", default_value="false", description="start rviz2 in the node's namespace"),
        DeclareLaunchArgument("foxglove", default_value="false", description="stream to Foxglove (WebSocket)"),
        DeclareLaunchArgument("foxglove_port", default_value="8765", description="Foxglove WebSocket port"),
    ] + [DeclareLaunchArgument(name, default_value=default, description=f"remap of {default}")
         for name, default in TOPICS.items()]
    node = Node(
        package="charm_ros",
        executable="charm-node",
        name="charm",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), {"use_sim_time": LaunchConfiguration("use_sim_time"),
                                                         "autostart": LaunchConfiguration("autostart"),
                                                         "model.checkpoint": LaunchConfiguration("checkpoint")}],
        remappings=[(default, LaunchConfiguration(name)) for name, default in TOPICS.items()],
        output="screen",
        emulate_tty=True,
    )
    # RViz's topics are relative (config/charm.rviz): in the node's namespace they resolve to its outputs
    rviz = Node(package="rviz2", executable="rviz2", namespace=LaunchConfiguration("namespace"),
                arguments=["-d", os.path.join(share, "config", "charm.rviz")],
                condition=IfCondition(LaunchConfiguration("rviz")))
    return LaunchDescription(args + [node, rviz, OpaqueFunction(function=foxglove_bridge)])


def foxglove_bridge(context):
    """The bridge in the node's namespace, streaming its inputs (as remapped) and outputs."""
    inputs = [LaunchConfiguration(name).perform(context) for name in TOPICS]
    topics = [t.replace("~/", "charm/", 1) if t.startswith("~/") else t for t in inputs if "camera_info" not in t]
    topics += [f"charm/{name}" for name in ("overlay", "color_mask", "labeled_points", "subset")] + ["/diagnostics"]
    return [Node(package="charm_ros", executable="charm-foxglove-bridge", name="foxglove_bridge",
                 namespace=LaunchConfiguration("namespace"),
                 parameters=[{"port": LaunchConfiguration("foxglove_port"), "topics": topics}],
                 condition=IfCondition(LaunchConfiguration("foxglove")))]
