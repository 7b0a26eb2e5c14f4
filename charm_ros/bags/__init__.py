"""Rosbags as the node sees them: reading in stamp order, topic selection, the evaluator and exporter
that drive the node's Engine, and their reports. A library: the charm-bag-* commands are thin over it."""
