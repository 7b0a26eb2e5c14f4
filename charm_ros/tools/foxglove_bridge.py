"""`charm-foxglove-bridge`: watch the node live in Foxglove, no RViz needed (pip installs included).

A Foxglove WebSocket server (foxglove-sdk), bound to 127.0.0.1 by default, that forwards the listed
ROS topics as they are on the wire: CDR bytes with their ros2msg schema (the .msg definitions of the
installed message packages), which Foxglove decodes natively. A topic is advertised once it exists in
the graph, and subscribed on the ROS side only while a Foxglove client watches it, so the charm node
builds its lazy outputs (overlay, labeled points...) only then. Connect with the Foxglove app: Open
connection -> Foxglove WebSocket -> ws://127.0.0.1:8765.
"""
from __future__ import annotations

import importlib
import os
import re
import sys
import time
from pathlib import Path

import foxglove
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from charm_ros.node.host import declare, run_node
from charm_ros.runtime.parameters import ParamSpec

BRIDGE_PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("host", "127.0.0.1", "address the WebSocket server binds to (0.0.0.0: reachable from other machines)"),
    ParamSpec("port", 8765, "WebSocket port (0 = any free port, logged at start)", minimum=0, maximum=65535),
    ParamSpec("topics", ["charm/overlay", "charm/color_mask", "charm/labeled_points", "charm/subset", "/diagnostics"],
              "ROS topics to stream (relative names resolve in the bridge's namespace)"),
)
PRIMITIVES = {"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32",
              "int64", "uint64", "string", "wstring"}
# best effort matches reliable and best-effort publishers; a viewer wants the newest, not every message
VIEWER_QOS = QoSProfile(depth=2, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)


def msg_definition(type_name: str) -> str:
    """The .msg text of 'pkg/msg/Name' from the installed share directories (AMENT_PREFIX_PATH, this
    interpreter's prefix); FileNotFoundError naming where it looked."""
    package, _, name = type_name.split("/")
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    candidates = [Path(p) / "share" / package / "msg" / f"{name}.msg" for p in prefixes]
    for path in candidates:
        if path.is_file():
            return path.read_text()
    raise FileNotFoundError(f"no definition of {type_name} in {', '.join(str(c.parent) for c in candidates)}")


def ros2msg_schema(type_name: str) -> str:
    """Foxglove's ros2msg schema: the type's definition, then every type it uses, each after a line of
    '=' and 'MSG: pkg/Name' (as rosbag2 writes MCAP schemas)."""
    text = msg_definition(type_name)
    seen, pending, parts = {_short(type_name)}, _used_types(text, type_name.split("/")[0]), [text.rstrip("\n")]
    while pending:
        used = pending.pop(0)
        if used in seen:
            continue
        seen.add(used)
        package, name = used.split("/")
        sub = msg_definition(f"{package}/msg/{name}")
        parts.append(f"{'=' * 80}\nMSG: {used}\n{sub.rstrip(chr(10))}")
        pending += _used_types(sub, package)
    return "\n".join(parts) + "\n"


def _short(type_name: str) -> str:
    package, _, name = type_name.split("/")
    return f"{package}/{name}"


def _used_types(text: str, package: str) -> list[str]:
    """'pkg/Name' of every non-primitive field type in a .msg text (same-package names qualified)."""
    out = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 2:
            continue
        base = re.sub(r"\[.*\]$", "", words[0]).split("<=")[0]
        if base not in PRIMITIVES:
            out.append(base if "/" in base else f"{package}/{base}")
    return out


def message_class(type_name: str) -> type:
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


class FoxgloveBridge(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("foxglove_bridge", **kwargs)
        p = declare(self, BRIDGE_PARAMETERS)
        self.wanted = [self.resolve_topic_name(t) for t in p["topics"]]
        self.server = foxglove.start_server(name="charm_ros", host=p["host"], port=p["port"])
        self.channels: dict[str, foxglove.Channel] = {}
        self.subs: dict = {}
        self.create_timer(0.25, self._sync)
        self.get_logger().info(f"Foxglove WebSocket server on ws://{p['host']}:{self.server.port} "
                               f"(Foxglove: Open connection -> Foxglove WebSocket), topics: {', '.join(self.wanted)}")

    def _sync(self) -> None:
        """Advertise topics that appeared; subscribe while a Foxglove client watches, unsubscribe after."""
        types = dict(self.get_topic_names_and_types())
        for topic in self.wanted:
            if topic not in self.channels and types.get(topic):
                type_name = types[topic][0]
                try:
                    schema = foxglove.Schema(name=type_name, encoding="ros2msg",
                                             data=ros2msg_schema(type_name).encode())
                    self.channels[topic] = foxglove.Channel(topic, message_encoding="cdr", schema=schema)
                    self.subs[topic] = (message_class(type_name), None)
                except (FileNotFoundError, ImportError, AttributeError) as exc:
                    self.get_logger().warning(f"cannot stream {topic}: {exc}", throttle_duration_sec=30.0)
        for topic, channel in self.channels.items():
            msg_type, sub = self.subs[topic]
            if channel.has_sinks() and sub is None:
                sub = self.create_subscription(msg_type, topic, lambda data, ch=channel: ch.log(
                    data, log_time=time.time_ns()), VIEWER_QOS, raw=True)
            elif not channel.has_sinks() and sub is not None:
                self.destroy_subscription(sub)
                sub = None
            self.subs[topic] = (msg_type, sub)

    def shutdown(self) -> None:
        self.server.stop()


def main(args: list[str] | None = None) -> int:
    return run_node(FoxgloveBridge, "foxglove_bridge", args, startup_errors=(ValueError, OSError, RuntimeError),
                    parameters=BRIDGE_PARAMETERS, summary=__doc__)


if __name__ == "__main__":
    sys.exit(main())
