"""Two processes exchange big best-effort Images and PointCloud2s over Fast DDS; nothing is lost or leaves the host."""
import json
import subprocess
import time

from dds_helpers import NODES

COUNT = 20


def nonloopback_tx_packets() -> int:
    total = 0
    with open("/proc/net/dev") as dev:
        for line in dev.readlines()[2:]:
            name, stats = line.split(":", 1)
            if name.strip() != "lo":
                total += int(stats.split()[9])
    return total


def test_big_messages_cross_processes_without_loss(processes, child_env):
    assert child_env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert child_env["FASTDDS_DEFAULT_PROFILES_FILE"].endswith("config/fastdds.xml")
    tx_before = nonloopback_tx_packets()
    start = time.monotonic()
    sub = processes.python(NODES / "dds_probe.py", "sub", "--count", str(COUNT), stdout=subprocess.PIPE, text=True)
    pub = processes.python(NODES / "dds_probe.py", "pub", "--count", str(COUNT), "--rate", "10")
    assert pub.wait(60) == 0
    out, _ = sub.communicate(timeout=60)
    tx_during = nonloopback_tx_packets() - tx_before
    result = json.loads(out.strip().splitlines()[-1])
    assert result["bad"] == []
    assert result["images"] == list(range(COUNT)), "best-effort 1024x1024 rgb8 images were dropped"
    assert result["clouds"] == list(range(COUNT)), "best-effort 100k-point clouds were dropped"
    # Discovery confined to localhost: DDS sends nothing on other interfaces. Unconfined, Fast DDS
    # multicasts several discovery packets per second; allow a couple for unrelated host traffic.
    assert tx_during <= 2 + int(time.monotonic() - start) // 10, f"{tx_during} packets left the host"
