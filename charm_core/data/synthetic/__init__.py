"""Synthetic multi-sensor street world (DESIGN.md §7): seeded, ray-cast, DELIVER classes."""
from charm_core.data.synthetic.conditions import CASES, CONDITIONS
from charm_core.data.synthetic.world import LidarSpec, SensorFrame, World

__all__ = ["CASES", "CONDITIONS", "LidarSpec", "SensorFrame", "World"]
