"""Bags played to real DDS subscribers: the live node given a recorded drive (sim time) publishes the masks
the offline evaluator computes; charm-bag-play republishes a latched topic latched."""
from __future__ import annotations

import subprocess
import threading

import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from bag_helpers import PARAMS, TS, evaluate, masks_by_stamp, record_rig_bag
from charm_core.inference import Predictor
from charm_ros.bags.topics import DEFAULT_TOPICS
from charm_ros.msgs.images import image_to_numpy
from charm_ros.tools.launcher import Launcher, NodeSpec, resolve_executable
from dds_helpers import wait_until

TICKS = 60   # 6 s of a volatile topic beside the latched one: the player runs while the late subscriber joins


@pytest.fixture(scope="module")
def rig_bag(tmp_path_factory):
    return record_rig_bag(tmp_path_factory.mktemp("bags") / "rig_mcap")


@pytest.fixture(scope="module")
def predictor(random_checkpoint):
    return Predictor.from_checkpoint(random_checkpoint, device="cpu")


@pytest.mark.slow
def test_live_node_matches_offline_evaluation(rig_bag, random_checkpoint, child_env, rclpy_node, predictor):
    """The bag replayed to the live node (sim time) gives the masks the offline evaluator computes."""
    masks: list[tuple[int, np.ndarray]] = []       # in publication order
    subsets: list[str] = []                          # ~/subset follows every mask, same order
    lock = threading.Lock()

    def on_mask(msg: Image) -> None:
        with lock:
            masks.append((msg.header.stamp.sec * 10 ** 9 + msg.header.stamp.nanosec, image_to_numpy(msg)))

    def on_subset(msg: String) -> None:
        with lock:
            subsets.append(msg.data)

    reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    rclpy_node.create_subscription(String, "/charm/subset", on_subset, reliable)
    rclpy_node.create_subscription(Image, "/charm/mask", on_mask, reliable)
    spec = NodeSpec(command=[resolve_executable("charm_node")], name="charm", params_files=[str(PARAMS)],
                    parameters={"model.checkpoint": str(random_checkpoint), "use_sim_time": True,
                                "model.backend": "torch"},
                    remappings=[("~/rgb/image", DEFAULT_TOPICS["rgb"]), ("~/depth/image", DEFAULT_TOPICS["depth"]),
                                ("~/event/image", DEFAULT_TOPICS["event"]), ("~/lidar/points", DEFAULT_TOPICS["lidar"]),
                                ("~/rgb/camera_info", DEFAULT_TOPICS["rgb_info"]),
                                ("~/depth/camera_info", DEFAULT_TOPICS["depth_info"])])
    offline = masks_by_stamp(evaluate(rig_bag, predictor))
    inputs = [DEFAULT_TOPICS[k] for k in ("rgb", "depth", "event", "lidar")]

    def caught_up() -> bool:
        """The mask of the bag's last frame came, and the ~/subset that follows it."""
        with lock:
            return max(offline) in [stamp for stamp, _ in masks] and len(subsets) == len(masks)

    with Launcher([spec], env=child_env) as launcher:
        # the node subscribes to its inputs once active (model loaded): play the bag only then
        assert wait_until(lambda: all(rclpy_node.count_subscribers(t) > 0 for t in inputs), 60), \
            "the node never subscribed to its inputs"
        # a quarter of real time: the node keeps up with every frame on a loaded machine
        player = subprocess.run([resolve_executable("charm-bag-play"), str(rig_bag), "--clock", "--rate", "0.25",
                                 "--start-delay", "1.0"], env=child_env, capture_output=True, text=True, timeout=90)
        assert player.returncode == 0, player.stderr
        wait_until(caught_up, 30)   # not asserted: a last frame left out is judged below with the others
        assert launcher.poll()["charm"] is None
    with lock:
        assert len(masks) == len(subsets), "masks and ~/subset messages went out of step"
        live = [(stamp, tuple(subset.split("+")), mask) for (stamp, mask), subset in zip(masks, subsets)]
    # Live, a sensor counts only once its first message has arrived, so the very first frames may use
    # fewer modalities than the offline replay (which sees each stamp's messages together). Compare the
    # frames where both ran the same subset; once they agree, they must keep agreeing.
    agree = [stamp in offline and offline[stamp][0] == subset for stamp, subset, _ in live]
    same = [(stamp, mask) for (stamp, _, mask), ok in zip(live, agree) if ok]
    assert len(same) >= 20, f"the live node published {len(live)} masks, {len(same)} comparable with the replay"
    assert all(agree[agree.index(True):]), f"live subsets left the replay's after start-up: {agree}"
    # same frames, same subset, same code path: the same masks (hence the same mIoU on those frames)
    for stamp, mask in same:
        np.testing.assert_array_equal(mask, offline[stamp][1])


def test_bag_play_republishes_a_latched_topic_latched(tmp_path, child_env, rclpy_node):
    """A CameraInfo recorded once from a latched publisher reaches a subscriber that comes up after it
    was played, as with `ros2 bag play`; an ordinary topic stays volatile."""
    def offered(durability: QosDurability) -> Qos:
        never = QosTime(sec=0, nsec=0)
        return Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, durability, never, never,
                   QosLiveliness.AUTOMATIC, never, False)

    bag = tmp_path / "latched"
    CameraInfoBag, StringBag = TS.types["sensor_msgs/msg/CameraInfo"], TS.types["std_msgs/msg/String"]
    with Writer(bag, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        info = writer.add_connection("/cam/camera_info", CameraInfoBag.__msgtype__, typestore=TS,
                                     offered_qos_profiles=[offered(QosDurability.TRANSIENT_LOCAL)])
        ticks = writer.add_connection("/cam/ticks", StringBag.__msgtype__, typestore=TS,
                                      offered_qos_profiles=[offered(QosDurability.VOLATILE)])
        t0 = 1_700_000_000 * 10 ** 9
        msg = CameraInfoBag(header=TS.types["std_msgs/msg/Header"](
            stamp=TS.types["builtin_interfaces/msg/Time"](sec=1_700_000_000, nanosec=0), frame_id="cam"),
            height=480, width=640, distortion_model="plumb_bob", d=np.zeros(5), k=np.eye(3).ravel(),
            r=np.eye(3).ravel(), p=np.zeros(12), binning_x=0, binning_y=0,
            roi=TS.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                             do_rectify=False))
        writer.write(info, t0, TS.serialize_cdr(msg, CameraInfoBag.__msgtype__))
        for k in range(TICKS):
            writer.write(ticks, t0 + k * 10 ** 8, TS.serialize_cdr(StringBag(data=str(k)), StringBag.__msgtype__))
    ticks_seen: list[str] = []
    rclpy_node.create_subscription(String, "/cam/ticks", lambda m: ticks_seen.append(m.data),   # best effort,
                                   QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))  # as played
    player = subprocess.Popen([resolve_executable("charm-bag-play"), str(bag), "--start-delay", "0.2"],
                              env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the CameraInfo (stamped with the first tick) has gone out once a later tick arrives
        assert wait_until(lambda: any(int(t) >= 2 for t in ticks_seen), 60), "the player never published"
        got: list[tuple[int, int]] = []
        rclpy_node.create_subscription(CameraInfo, "/cam/camera_info", lambda m: got.append((m.height, m.width)),
                                       QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                                  durability=DurabilityPolicy.TRANSIENT_LOCAL))
        assert wait_until(lambda: got, 30), "the latched CameraInfo never reached a late subscriber"
        assert got == [(480, 640)]
    finally:
        out, err = player.communicate(timeout=60)
    assert player.returncode == 0, err
    assert "1  /cam/camera_info" in out and f"{TICKS}  /cam/ticks" in out
