"""ROS-free runtime: the Engine (synchronizer, pipeline, counters, health) that the node and the bag
evaluator drive, node configuration and parameter specs. Nothing here imports rclpy."""
