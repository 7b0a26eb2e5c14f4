"""Command-line pieces shared by the replay commands (charm-bag-eval, charm-bag-export): topic flags,
the checkpoint's sensors, the node's parameter file, and user mistakes as one line instead of a traceback."""
from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import yaml
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.typesys import Stores, get_typestore

from charm_core.checkpoint import read_modality_specs
from charm_ros.bags.topics import TOPIC_KEYS, default_topics
from charm_ros.runtime.node_config import DELIVER_SENSORS, NodeConfig, node_sensors, validate
from charm_ros.runtime.parameters import load_param_file


def load_topics(args: argparse.Namespace, keys: tuple[str, ...] = TOPIC_KEYS) -> tuple[dict[str, str | None], set[str]]:
    """The topic of each key, and the keys the user named (flags or --topics), which must be in the bag."""
    topics = default_topics(keys)
    named: set[str] = set()
    if args.topics:
        given = yaml.safe_load(Path(args.topics).read_text()) or {}
        unknown = sorted(set(given) - set(keys))
        if unknown:
            raise ValueError(f"{args.topics}: unknown keys {unknown}; expected {list(keys)}")
        topics.update(given)
        named.update(given)
    for key in keys:
        value = getattr(args, key.replace("-", "_"), None)
        if value is not None:
            topics[key] = value or None   # an empty string disables the topic
            named.add(key)
    return topics, {k for k in named if topics[k]}


def sensors_of_checkpoint(argv: list[str] | None, default: str) -> tuple[tuple, ValueError | None]:
    """The node's sensors for the --checkpoint on the command line (it decides which sensor flags
    exist), read before the full parse; an unreadable checkpoint is reported after it (--help works)."""
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--checkpoint", default=default)
    try:
        return node_sensors(read_modality_specs(first.parse_known_args(argv)[0].checkpoint)), None
    except ValueError as exc:
        return DELIVER_SENSORS, exc


@contextmanager
def cli_errors(parser: argparse.ArgumentParser, bag: Path) -> Iterator[None]:
    """A user's mistake (an unreadable bag or checkpoint, a topic the bag lacks, a bad parameter file)
    ends charm-bag-eval / charm-bag-export with one line and exit 2, not a traceback."""
    try:
        yield
    except AnyReaderError as exc:
        parser.error(f"cannot read the bag {bag}: {exc}")
    except (OSError, ValueError, KeyError) as exc:
        parser.error(str(exc))


def replay_settings(args: argparse.Namespace, keys: tuple[str, ...], sensors: tuple,
                    sensor_error: ValueError | None) -> tuple[dict[str, str | None], set[str], NodeConfig]:
    """(topics, topics the user named, node config) of a replay tool's command line: the node's own
    parameter file validated for the checkpoint's sensors."""
    if sensor_error is not None:
        raise sensor_error
    topics, named = load_topics(args, keys)
    return topics, named, validate(load_param_file(args.params), sensors)


def add_topic_arguments(parser: argparse.ArgumentParser, keys: tuple[str, ...]) -> None:
    """--topics FILE and one flag per topic key (shared by charm-bag-eval and charm-bag-export)."""
    defaults = default_topics(keys)
    parser.add_argument("--topics", help=f"YAML mapping of {'/'.join(keys)} to topics")
    for key in keys:
        parser.add_argument(f"--{_flag(key)}", dest=key, help=f"topic of {key} (default {defaults[key]}; '' = none)")


def check_topics(bag: Path, topics: dict[str, str | None], named: set[str]) -> None:
    """A topic the user named that the bag lacks is an error listing the bag's topics; a default one
    is a warning (with how to turn it off), since a user's bag has its own names."""
    with AnyReader([bag], default_typestore=get_typestore(Stores.LATEST)) as reader:
        recorded = sorted({c.topic for c in reader.connections})
    absent = {k: t for k, t in topics.items() if t and t not in recorded}
    wrong = [f"--{_flag(k)} {t}" for k, t in absent.items() if k in named]
    if wrong:
        raise ValueError(f"not in the bag: {', '.join(wrong)}; the bag has {', '.join(recorded) or 'no topics'}")
    for key, topic in absent.items():
        print(f"charm-bag-eval: the default {key} topic {topic} is not in the bag (set --{_flag(key)} to its "
              f"topic, or --{_flag(key)} '' for none); the bag has {', '.join(recorded)}", file=sys.stderr)


def _flag(key: str) -> str:
    """--camera-info (rgb's), --depth-camera-info, --thermal-camera-info, --thermal ..."""
    if key == "rgb_info":
        return "camera-info"
    return f"{key[:-len('_info')]}-camera-info" if key.endswith("_info") else key
