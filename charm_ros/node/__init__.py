"""The rclpy layer: the lifecycle node (charm_node), its topics, the QoS watch, latched CameraInfo and the
process host every node of the package runs in. The logic these drive lives in runtime/ and msgs/."""
