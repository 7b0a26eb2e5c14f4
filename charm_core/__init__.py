"""charm_core: the ROS-free half of charm_ros: CHARM model, sensor encoders, data, training, inference.

Never imports rclpy or charm_ros, so training and offline evaluation run without a ROS install.
"""
__version__ = "0.1.0"
