"""Bag helpers the unit (offline evaluation) and integration (a bag played to the live node) tests share."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from rosbags.typesys import Stores, get_typestore

from charm_ros.bags.evaluator import BagEvaluator
from charm_ros.bags.reader import read_in_stamp_order, stamp_ns
from charm_ros.bags.topics import DEFAULT_TOPICS
from charm_ros.runtime.node_config import validate
from charm_ros.runtime.parameters import load_param_file
from charm_ros.tools.bag_record import record
from support import ROOT

TS = get_typestore(Stores.ROS2_KILTED)
PARAMS = ROOT / "config" / "charm.param.yaml"
SIZE = (128, 160)   # not square, not the network size: exercises the letterbox


def record_rig_bag(path: Path, storage: str = "mcap") -> Path:
    """3 s of the sim rig's drive (seed 5, SIZE), as charm-bag-record writes it."""
    record(path, duration=3.0, storage=storage, seed=5, size=SIZE, progress=False)
    return path


def evaluate(bag: Path, predictor, topics=None, drop=None) -> BagEvaluator:
    evaluator = BagEvaluator(predictor, validate(load_param_file(PARAMS)), topics or DEFAULT_TOPICS, drop)
    for topic, msg, at, received in read_in_stamp_order(bag, set(evaluator.topics.values())):
        evaluator.feed(topic, msg, at, received)
    evaluator.finish()
    return evaluator


def masks_by_stamp(evaluator: BagEvaluator) -> dict[int, tuple[tuple[str, ...], np.ndarray]]:
    return {stamp_ns(r.frame.data[r.frame.reference]): (r.subset, r.labels) for r in evaluator.results}
