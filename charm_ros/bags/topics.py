"""Which bag topic feeds which input: one key per sensor, per camera's CameraInfo and the ground truth,
with the sensor rig's topics (what charm-bag-record writes) as defaults."""
from __future__ import annotations

from charm_core.modalities import MODALITIES

RIG = "/sim_rig/"

NO_CAMERA_INFO = ("event", "lidar")  # sensors without a CameraInfo topic key


def topic_keys(sensors: tuple[str, ...] = MODALITIES) -> tuple[str, ...]:
    """The topic keys of a node with these sensors: one per sensor, `<sensor>_info` per camera's
    CameraInfo, and `gt`."""
    return sensors + tuple(f"{m}_info" for m in sensors if m not in NO_CAMERA_INFO) + ("gt",)


def default_topics(keys: tuple[str, ...]) -> dict[str, str]:
    """The sensor rig's topic of each key (what charm-bag-record writes)."""
    def topic(key: str) -> str:
        if key in ("gt", "lidar"):
            return RIG + ("ground_truth" if key == "gt" else "lidar/points")
        return RIG + (f"{key[:-len('_info')]}/camera_info" if key.endswith("_info") else f"{key}/image")
    return {k: topic(k) for k in keys}


TOPIC_KEYS = topic_keys()

DEFAULT_TOPICS = default_topics(TOPIC_KEYS)
