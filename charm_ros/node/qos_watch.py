"""The ROS side of the QoS diagnostics: incompatible-QoS events and the graph (who publishes or
subscribes on the node's topics, with which QoS and type) turned into charm_ros.runtime.qos words.

Events say at once that a peer does not match; the graph says which peer, which policy, and when it
is fixed: an event stands until the set of peers on its topic changes, a graph mismatch as long as
it is there.
"""
from __future__ import annotations

import time
from typing import Any

from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks, qos_policy_name_from_kind
from rclpy.node import Node

from charm_ros.runtime.qos import Endpoint, input_warning, output_warning


def _type_name(msg_type: Any) -> str:
    return f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"


def _endpoint(info: Any) -> Endpoint:
    qos = info.qos_profile
    known = not info.node_name.startswith("_NODE_NAME_UNKNOWN_")  # discovery has not told its node yet
    node = f"{info.node_namespace.rstrip('/')}/{info.node_name}" if known else ""
    return Endpoint(node, info.topic_type, qos.reliability.name.lower(), qos.durability.name.lower())


class QosWatch:
    def __init__(self, node: Node, silent_after: float) -> None:
        self.node = node
        self.silent_after = silent_after
        self.inputs: dict[str, tuple[str, Endpoint]] = {}   # resolved topic -> (sensor, our subscription)
        self.outputs: dict[str, Endpoint] = {}              # resolved topic -> our publisher
        self.events: dict[str, tuple[str, frozenset]] = {}  # topic -> (policy, peers when it came)
        self.heard: dict[str, float] = {}                   # topic -> monotonic time of the last message or change
        self.warnings: tuple[dict[str, str], dict[str, str]] = ({}, {})  # the last update's check()

    # ------------------------------------------------------------------ registration
    def subscription_events(self, topic: str) -> SubscriptionEventCallbacks:
        return SubscriptionEventCallbacks(incompatible_qos=lambda info: self._on_event(topic, info, True))

    def publisher_events(self, topic: str) -> PublisherEventCallbacks:
        return PublisherEventCallbacks(incompatible_qos=lambda info: self._on_event(topic, info, False))

    def add_input(self, topic: str, sensor: str, msg_type: Any, qos: Any) -> None:
        self.inputs[topic] = (sensor, Endpoint(self.node.get_fully_qualified_name(), _type_name(msg_type),
                                               qos.reliability.name.lower(), qos.durability.name.lower()))
        self.heard[topic] = time.monotonic()

    def add_output(self, topic: str, msg_type: Any, qos: Any) -> None:
        self.outputs[topic] = Endpoint(self.node.get_fully_qualified_name(), _type_name(msg_type),
                                       qos.reliability.name.lower(), qos.durability.name.lower())

    def clear_inputs(self) -> None:
        for topic in self.inputs:
            self.events.pop(topic, None)
        self.inputs.clear()

    def received(self, topic: str) -> None:
        self.heard[topic] = time.monotonic()

    def _on_event(self, topic: str, info: Any, subscription: bool) -> None:
        peers = self._peers(topic, subscription)
        self.events[topic] = (qos_policy_name_from_kind(info.last_policy_kind).lower(),
                              frozenset(bytes(p.endpoint_gid) for p in peers))

    def _peers(self, topic: str, subscription: bool) -> list:
        ours = self.node.get_fully_qualified_name()
        infos = (self.node.get_publishers_info_by_topic(topic) if subscription
                 else self.node.get_subscriptions_info_by_topic(topic))
        return [i for i in infos if f"{i.node_namespace.rstrip('/')}/{i.node_name}" != ours]

    def _event_policy(self, topic: str, peers: list) -> str:
        policy, gids = self.events.get(topic, ("", frozenset()))
        if policy and gids != frozenset(bytes(p.endpoint_gid) for p in peers):
            del self.events[topic]  # the peers changed since: the graph check judges them now
            return ""
        return policy

    # ------------------------------------------------------------------ the check (a timer calls it)
    def update(self, quiet_ok: set[str] = frozenset()) -> None:
        """check() into `warnings`, logging each topic when it starts being warned about (not each time
        its text changes by itself, as a silence's length does)."""
        before = {*self.warnings[0], *self.warnings[1]}
        self.warnings = self.check(quiet_ok)
        for topic, text in {**self.warnings[0], **self.warnings[1]}.items():
            if topic not in before:
                self.node.get_logger().warning(f"QoS: {text}")

    def check(self, quiet_ok: set[str] = frozenset()) -> tuple[dict[str, str], dict[str, str]]:
        """({sensor: warning}, {output topic: warning}) for /diagnostics; empty where all is well.
        Silence on the topics in `quiet_ok` is fine (a CameraInfo already taken, e.g. latched once)."""
        now = time.monotonic()
        sensors: dict[str, list[str]] = {}
        for topic, (sensor, ours) in self.inputs.items():
            peers = self._peers(topic, True)
            if not peers or topic in quiet_ok:
                self.heard[topic] = now  # silence counts from when a publisher is there
            silent = now - self.heard[topic]
            text = input_warning(topic, ours, [_endpoint(p) for p in peers], silent if peers else None,
                                 self.silent_after, self._event_policy(topic, peers))
            if text:
                sensors.setdefault(sensor, []).append(text)
        outputs = {}
        for topic, ours in self.outputs.items():
            peers = self._peers(topic, False)
            text = output_warning(topic, ours, [_endpoint(p) for p in peers], self._event_policy(topic, peers))
            if text:
                outputs[topic] = text
        return {s: "; ".join(t) for s, t in sensors.items()}, outputs
