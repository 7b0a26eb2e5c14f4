"""ros2 launch charm_ros sim_demo.launch.py [duration:=40.0] [dropouts:=...] [faults:=...] [checkpoint:=...]
[rviz:=false] [foxglove:=false] [foxglove_port:=8765] [autostart:=true] [prerender:=0.0]

The synthetic sensor rig with scripted dropouts and content faults, the charm node on its topics, and the
demo report (which ends the launch when done). Same graph as sim_demo.launch.yaml (used by `make demo`)."""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

DROPOUTS = "depth:8-14,rgb:18-24,lidar:18-24,event:28-32,all:34-36"
FAULTS = "depth:frozen:3-6"
FOXGLOVE_TOPICS = [f"/sim_rig/{m}/image" for m in ("rgb", "depth", "event")] + ["/sim_rig/lidar/points"] + [
    f"/charm/{name}" for name in ("overlay", "color_mask", "labeled_points", "subset")] + ["/diagnostics"]


def generate_launch_description():
    share = get_package_share_directory("charm_ros")
    config = os.path.join(share, "config")
    duration = LaunchConfiguration("duration")
    dropouts = LaunchConfiguration("dropouts")
    faults = LaunchConfiguration("faults")
    rig = Node(package="charm_ros", executable="charm-sim-rig", name="sim_rig",
               parameters=[os.path.join(config, "sim_rig.param.yaml"),
                           {"dropouts": dropouts, "faults": faults, "start_delay": 4.0,
                            "prerender": LaunchConfiguration("prerender")}])
    node = Node(package="charm_ros", executable="charm-node", name="charm",
                parameters=[os.path.join(config, "charm.param.yaml"),
                            {"autostart": LaunchConfiguration("autostart"),
                             "model.checkpoint": LaunchConfiguration("checkpoint")}],
                remappings=[(f"~/{m}/image", f"/sim_rig/{m}/image") for m in ("rgb", "depth", "event")]
                + [("~/lidar/points", "/sim_rig/lidar/points"),
                   ("~/rgb/camera_info", "/sim_rig/rgb/camera_info"),
                   ("~/depth/camera_info", "/sim_rig/depth/camera_info")])
    report = Node(package="charm_ros", executable="charm-demo-report", name="demo_report",
                  parameters=[{"duration": duration, "dropouts": dropouts, "faults": faults,
                               "output_dir": LaunchConfiguration("output_dir")}],
                  remappings=[("~/mask", "/charm/mask"), ("~/subset", "/charm/subset"),
                              ("~/ground_truth", "/sim_rig/ground_truth"), ("~/rgb", "/sim_rig/rgb/image"),
                              ("~/rig_status", "/sim_rig/status")],
                  output="screen")
    rviz = Node(package="rviz2", executable="rviz2", arguments=["-d", os.path.join(config, "charm.rviz")],
                condition=IfCondition(LaunchConfiguration("rviz")))
    foxglove = Node(package="charm_ros", executable="charm-foxglove-bridge", name="foxglove_bridge",
                    parameters=[{"port": LaunchConfiguration("foxglove_port"), "topics": FOXGLOVE_TOPICS}],
                    condition=IfCondition(LaunchConfiguration("foxglove")))
    return LaunchDescription([
        DeclareLaunchArgument("duration", default_value="40.0"),
        DeclareLaunchArgument("dropouts", default_value=DROPOUTS),
        DeclareLaunchArgument("faults", default_value=FAULTS, description="content faults, e.g. depth:frozen:3-6"),
        DeclareLaunchArgument("output_dir", default_value="out/demo"),
        DeclareLaunchArgument("checkpoint", default_value="models/charm_tiny_synthetic.safetensors"),
        DeclareLaunchArgument("rviz", default_value="false"),
        DeclareLaunchArgument("autostart", default_value="true", description="configure + activate the node"),
        DeclareLaunchArgument("foxglove", default_value="false", description="stream to Foxglove (WebSocket)"),
        DeclareLaunchArgument("foxglove_port", default_value="8765"),
        DeclareLaunchArgument("prerender", default_value="0.0",
                              description="seconds of the drive the rig renders before its first frame (0 = live)"),
        rig, node, report, rviz, foxglove,
        RegisterEventHandler(OnProcessExit(target_action=report, on_exit=[EmitEvent(event=Shutdown())])),
    ])
