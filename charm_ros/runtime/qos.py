"""Why a topic delivers nothing, decided without ROS: the node's endpoints against their peers' QoS and
types, in words that name the topic, the policy and what to change.

The most common "no output" report is a QoS mismatch: a reliable subscription and a best-effort
publisher never connect, and DDS says so only in a log line of some other process. The node turns
the ROS graph into `Endpoint`s and asks here what to put on /diagnostics.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    node: str         # fully qualified node name of the endpoint ("/sim_rig"); "" while discovery has not told it
    type: str         # "sensor_msgs/msg/Image"
    reliability: str  # "reliable" | "best_effort" (anything else is not judged)
    durability: str   # "volatile" | "transient_local"


def mismatches(offered: Endpoint, requested: Endpoint) -> list[str]:
    """The policies in which a publisher (`offered`) cannot serve a subscription (`requested`): DDS's
    request-versus-offered rule for the two policies these nodes set."""
    out = []
    if requested.reliability == "reliable" and offered.reliability == "best_effort":
        out.append("reliability")
    if requested.durability == "transient_local" and offered.durability == "volatile":
        out.append("durability")
    return out


# (problem, the node's endpoint is a subscription) -> words; {hint} only for input types
WORDS = {
    ("type", True): "{topic}: {who} publishes {theirs}, this node subscribes {ours}: remap the input to a topic "
                    "of {ours}{hint}",
    ("reliability", True): "{topic}: {who} publishes best_effort but this node subscribes reliable (reliability): "
                           "nothing from it arrives; set qos.input_reliability to best_effort (matches every "
                           "publisher) or make the publisher reliable",
    ("durability", True): "{topic}: {who} publishes volatile but this subscription is transient_local (durability): "
                          "make the publisher transient_local",
    ("type", False): "{topic}: {who} subscribes {theirs}, this node publishes {ours}",
    ("reliability", False): "{topic}: {who} subscribes reliable but this node publishes best_effort (reliability): "
                            "it receives nothing; set qos.output_reliability to reliable or subscribe best_effort",
    ("durability", False): "{topic}: {who} subscribes transient_local but this output is volatile (durability): "
                           "subscribe volatile",
}


def _peer_problems(topic: str, ours: Endpoint, peers: list[Endpoint], subscription: bool) -> list[str]:
    """What keeps each peer (publishers of our subscription, or subscribers of our publisher) from us."""
    problems = []
    for peer in peers:
        compressed = "CompressedImage" in peer.type
        words = {"topic": topic, "who": peer.node or ("a publisher" if subscription else "a subscriber"),
                 "theirs": peer.type, "ours": ours.type,
                 "hint": " (compressed images: a topic ending in /compressed)" if compressed else ""}
        if peer.type != ours.type:
            problems.append(WORDS["type", subscription].format(**words))
            continue
        offered, requested = (peer, ours) if subscription else (ours, peer)
        problems += [WORDS[policy, subscription].format(**words) for policy in mismatches(offered, requested)]
    return problems


def input_warning(topic: str, ours: Endpoint, publishers: list[Endpoint], silent_s: float | None,
                  silent_after: float, event_policy: str = "") -> str:
    """'' when the topic's publishers can reach our subscription, else what is wrong and what to change.

    `silent_s`: seconds with publishers present and no message (None: messages arrive, or no
    publisher); `event_policy`: the policy of an incompatible-QoS event not explained by the graph."""
    problems = _peer_problems(topic, ours, publishers, subscription=True)
    if not problems and event_policy:
        problems.append(f"{topic}: a publisher offers QoS incompatible with this subscription ({event_policy}): "
                        f"give the publisher this node's {event_policy} or change the node's")
    if not problems and publishers and silent_s is not None and silent_s >= silent_after:
        names = ", ".join(sorted({p.node or "?" for p in publishers}))
        problems.append(f"{topic}: {len(publishers)} publisher(s) ({names}) but nothing received for "
                        f"{silent_s:.1f} s although their QoS matches: check that they send, and the DDS "
                        f"transport between the two processes (shared memory, ROS_AUTOMATIC_DISCOVERY_RANGE)")
    return "; ".join(problems)


def output_warning(topic: str, ours: Endpoint, subscribers: list[Endpoint], event_policy: str = "") -> str:
    """'' when every subscriber of an output can be served, else who cannot and what to change."""
    problems = _peer_problems(topic, ours, subscribers, subscription=False)
    if not problems and event_policy:
        problems.append(f"{topic}: a subscriber requests QoS this output does not offer ({event_policy}): "
                        f"match the node's {event_policy} in the subscriber")
    return "; ".join(problems)
