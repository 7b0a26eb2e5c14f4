"""Launcher-test node: republishes `input` on `output` with its `prefix` parameter, or with no
subscription (`source:=true`) publishes its `message` parameter on `output` at 10 Hz."""
import sys

from rclpy.node import Node
from std_msgs.msg import String

from charm_ros.node.host import run_node


class Relay(Node):
    def __init__(self) -> None:
        super().__init__("relay")
        self.prefix = self.declare_parameter("prefix", "").value
        self.pub = self.create_publisher(String, "output", 10)
        if self.declare_parameter("source", False).value:
            message = self.declare_parameter("message", "unset").value
            self.create_timer(0.1, lambda: self.pub.publish(String(data=self.prefix + message)))
        else:
            self.create_subscription(String, "input", self.on_input, 10)

    def on_input(self, msg: String) -> None:
        self.pub.publish(String(data=self.prefix + msg.data))


def main() -> int:
    return run_node(Relay, "relay")


if __name__ == "__main__":
    sys.exit(main())
