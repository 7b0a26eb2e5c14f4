"""The demo watched through Foxglove: the bridge serves the node's overlay, subset and diagnostics over the
Foxglove WebSocket protocol, decodable with their ros2msg schemas."""
from __future__ import annotations

import asyncio
import json
import socket
import struct
import time

from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image
from std_msgs.msg import String

from charm_ros.tools.launcher import Launcher, load_launch_yaml
from support import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RESUBSCRIBE_S = 3.0  # a topic advertised but silent this long is subscribed again, as a viewer reconnecting would


async def _watch(port: int, topics: dict[str, type], timeout: float) -> dict[str, object]:
    """Subscribe over the Foxglove WebSocket protocol and decode one message of each topic. A subscription
    the server did not take (on a loaded machine it can answer "attempted to subscribe to unknown channel"
    for a channel it has just advertised) is made again until the topic's first message arrives."""
    import websockets
    from rclpy.serialization import deserialize_message

    decoded: dict[str, object] = {}
    async with websockets.connect(f"ws://127.0.0.1:{port}", max_size=None,
                                  subprotocols=["foxglove.sdk.v1", "foxglove.websocket.v1"]) as ws:
        assert json.loads(await ws.recv())["op"] == "serverInfo"
        channels: dict[int, str] = {}       # channel id -> topic
        subscriptions: dict[int, str] = {}  # subscription id -> topic
        subscribed_at: dict[int, float] = {}  # channel id -> when it was last subscribed

        async def subscribe(channel: int) -> None:
            subscriptions[len(subscriptions) + 1] = channels[channel]
            subscribed_at[channel] = time.monotonic()
            await ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                {"id": len(subscriptions), "channelId": channel}]}))

        deadline = time.monotonic() + timeout
        while len(decoded) < len(topics) and time.monotonic() < deadline:
            for channel, topic in channels.items():
                if topic not in decoded and time.monotonic() - subscribed_at[channel] > RESUBSCRIBE_S:
                    await subscribe(channel)
            try:
                message = await asyncio.wait_for(ws.recv(), min(1.0, max(0.1, deadline - time.monotonic())))
            except asyncio.TimeoutError:
                continue
            if isinstance(message, str):
                body = json.loads(message)
                if body["op"] == "advertise":
                    for ch in body["channels"]:
                        if ch["topic"] in topics and ch["id"] not in channels:
                            assert ch["encoding"] == "cdr" and ch["schemaEncoding"] == "ros2msg"
                            channels[ch["id"]] = ch["topic"]
                            await subscribe(ch["id"])
            elif message[0] == 1:  # messageData: opcode, subscription id, log time, payload
                subscription, _ = struct.unpack_from("<IQ", message, 1)
                topic = subscriptions[subscription]
                decoded.setdefault(topic, deserialize_message(message[13:], topics[topic]))
    return decoded


def test_the_demo_can_be_watched_in_foxglove(tmp_path, child_env):
    port = _free_port()
    specs, _ = load_launch_yaml(ROOT / "launch" / "sim_demo.launch.yaml", {
        "foxglove": "true", "foxglove_port": str(port), "duration": "60.0", "output_dir": str(tmp_path / "demo"),
        "backend": "torch"})
    assert [s.name for s in specs] == ["sim_rig", "charm", "demo_report", "foxglove_bridge"]
    topics = {"/charm/overlay": Image, "/charm/subset": String, "/diagnostics": DiagnosticArray}
    with Launcher(specs, env=child_env):
        decoded = {}
        deadline = time.monotonic() + 120
        while len(decoded) < len(topics) and time.monotonic() < deadline:
            try:
                decoded = asyncio.run(_watch(port, topics, deadline - time.monotonic()))
            except OSError:  # the server is not listening yet
                time.sleep(0.5)
    assert set(decoded) == set(topics), f"decoded only {sorted(decoded)}"
    overlay = decoded["/charm/overlay"]
    assert (overlay.encoding, overlay.height, overlay.width) == ("rgb8", 256, 256)
    assert all(m in ("rgb", "depth", "event", "lidar") for m in decoded["/charm/subset"].data.split("+"))
    assert "/charm: pipeline" in [s.name for s in decoded["/diagnostics"].status]
