"""ROS messages <-> numpy: sensor conversions, compressed transports, and the output messages."""
