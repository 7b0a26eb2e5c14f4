"""The Foxglove bridge's schemas (tools/foxglove_bridge.py): a message's ros2msg schema lists every nested type
once. The bridge serving a running demo is test/integration/test_foxglove_demo.py."""
from charm_ros.tools.foxglove_bridge import ros2msg_schema


def test_ros2msg_schema_lists_every_nested_type_once():
    schema = ros2msg_schema("sensor_msgs/msg/PointCloud2")
    sections = [line for line in schema.splitlines() if line.startswith("MSG: ")]
    assert sections == ["MSG: std_msgs/Header", "MSG: sensor_msgs/PointField", "MSG: builtin_interfaces/Time"]
    assert schema.startswith("# This message holds a collection of N-dimensional points")
    assert "uint8 FLOAT32 = 7" in schema and schema.count("=" * 80) == 3
