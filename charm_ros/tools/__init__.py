"""Command-line tools: launcher, DDS environment, synthetic sensor rig, demo report, rosbag record / eval / play."""
