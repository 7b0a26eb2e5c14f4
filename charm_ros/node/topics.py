"""The charm node's topics: the subscriptions that feed its Engine and the lifecycle publishers of its
outputs, each registered with the QoS watch so /diagnostics can say why a topic delivers nothing.

Inputs exist while the node is active (one per enabled sensor: Image, its compressed transport or
PointCloud2, plus the cameras' CameraInfo), outputs from configure to cleanup.
"""
from __future__ import annotations

from typing import Any, Callable

from rclpy.lifecycle import LifecycleNode
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import String

from charm_ros.node.latched_camera_info import LATCHED, LatchedCameraInfo
from charm_ros.msgs import compressed
from charm_ros.msgs.outputs import OUTPUT_TYPES, labels_message, output_messages
from charm_ros.node.qos_watch import QosWatch
from charm_ros.runtime.engine import Engine
from charm_ros.runtime.node_config import NodeConfig
from charm_ros.runtime.pipeline import Result

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


class NodeInputs:
    """Subscriptions: every message counts as heard for the QoS watch, then goes to `on_sensor(sensor,
    msg)` or `on_camera_info(sensor, msg)`; a CameraInfo latched before the node subscribed is taken too."""

    def __init__(self, node: LifecycleNode, qos: QosWatch, on_sensor: Callable[[str, Any], None],
                 on_camera_info: Callable[[str, CameraInfo], None]) -> None:
        self.node, self.qos, self.on_sensor, self.on_camera_info = node, qos, on_sensor, on_camera_info
        self.subs: list = []
        self.topic_sensor: dict[str, str] = {}  # resolved input topic -> the sensor it feeds
        self.camera_info_topics: dict[str, str] = {}  # sensor -> resolved CameraInfo topic
        self.latched_info = LatchedCameraInfo(node, self.camera_info_topics, on_camera_info)

    def open(self, cfg: NodeConfig) -> None:
        qos = QoSProfile(depth=cfg.qos.input_depth, history=HistoryPolicy.KEEP_LAST,
                         reliability=RELIABILITY[cfg.qos.input_reliability])
        for m in cfg.enabled:
            topic = self.node.resolve_topic_name(cfg.topics[m])
            msg_type = PointCloud2 if m == "lidar" else (
                CompressedImage if compressed.is_transport_topic(topic) else Image)
            self._subscribe(msg_type, topic, m, lambda msg, m=m: self.on_sensor(m, msg), qos)
        for m, name in cfg.camera_info_topics.items():
            if m in cfg.enabled or m == "rgb":
                topic = self.node.resolve_topic_name(name)
                self._subscribe(CameraInfo, topic, m, lambda msg, m=m: self.on_camera_info(m, msg), qos)
                self.camera_info_topics[m] = topic

    def _subscribe(self, msg_type: Any, topic: str, sensor: str, callback: Callable, qos: QoSProfile) -> None:
        def on_message(msg: Any) -> None:
            self.qos.received(topic)
            callback(msg)
        self.subs.append(self.node.create_subscription(msg_type, topic, on_message, qos,
                                                       event_callbacks=self.qos.subscription_events(topic)))
        self.topic_sensor[topic] = sensor
        self.qos.add_input(topic, sensor, msg_type, qos)

    def poll_latched(self, has_camera: Callable[[str], bool]) -> None:
        self.latched_info.poll(has_camera)

    def close(self) -> None:
        for sub in self.subs:
            self.node.destroy_subscription(sub)
        self.subs = []
        self.latched_info.close()
        self.topic_sensor.clear()
        self.camera_info_topics.clear()
        self.qos.clear_inputs()


class NodeOutputs:
    """Lifecycle publishers of ~/<output> (OUTPUT_TYPES) and the latched ~/labels."""

    def __init__(self, node: LifecycleNode, qos: QosWatch) -> None:
        self.node, self.qos = node, qos
        self.pubs: dict = {}  # output name -> lifecycle publisher

    def open(self, cfg: NodeConfig) -> None:
        qos = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST,
                         reliability=RELIABILITY[cfg.qos.output_reliability])
        for name, msg_type in [*OUTPUT_TYPES.items(), ("labels", String)]:
            topic = self.node.resolve_topic_name(f"~/{name}")
            profile = LATCHED if name == "labels" else qos
            self.pubs[name] = self.node.create_lifecycle_publisher(
                msg_type, topic, profile, event_callbacks=self.qos.publisher_events(topic))
            self.qos.add_output(topic, msg_type, profile)

    def listened(self) -> list[str]:
        """The outputs someone subscribes to (the worker runs nothing while this is empty)."""
        return [name for name in OUTPUT_TYPES if self.pubs[name].get_subscription_count() > 0]

    def publish(self, engine: Engine, result: Result, names: list[str]) -> None:
        for name, msg in output_messages(result, names, engine.palette, engine.config.overlay_alpha).items():
            self.pubs[name].publish(msg)

    def publish_labels(self, engine: Engine) -> None:
        self.pubs["labels"].publish(labels_message(engine.predictor.class_names, engine.palette))

    def close(self) -> None:
        for pub in self.pubs.values():
            self.node.destroy_lifecycle_publisher(pub)
        self.pubs.clear()
        self.qos.outputs.clear()
