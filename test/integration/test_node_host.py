"""The node host (charm_ros/node/host.py): a message rclpy cannot convert is dropped and reported, the
subscription lives on; a cleanup that hangs ends the process with its stacks."""
import time

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import String

from charm_ros.node.host import TolerantExecutor

UNCONVERTIBLE = "Unable to convert call argument '0' to Python object"
STUCK_S = 60.0   # how long the hung teardown below would take


@pytest.fixture
def node(domain_id):
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = rclpy.create_node("tolerant_test", context=context)
    yield node
    node.destroy_node()
    rclpy.shutdown(context=context)


def first_take_fails(monkeypatch):
    """rclpy takes the first message off the wire, then fails to convert it (as in ros2/rclpy#848)."""
    real = SingleThreadedExecutor._take_subscription
    calls = []

    def take(self, sub):
        calls.append(sub.topic_name)
        work = real(self, sub)
        if len(calls) == 1:
            raise RuntimeError(UNCONVERTIBLE)
        return work

    monkeypatch.setattr(SingleThreadedExecutor, "_take_subscription", take)


def spin_until(executor, done, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)


def test_plain_executor_dies_on_an_unconvertible_message(node, monkeypatch):
    first_take_fails(monkeypatch)
    node.create_subscription(String, "/tolerant", lambda msg: None, 10)
    pub = node.create_publisher(String, "/tolerant", 10)
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    pub.publish(String(data="a"))
    with pytest.raises(RuntimeError, match="Unable to convert"):
        spin_until(executor, lambda: False)
    executor.shutdown()


def test_tolerant_executor_drops_it_reports_it_and_keeps_receiving(node, monkeypatch):
    first_take_fails(monkeypatch)
    got, reports = [], []
    node.create_subscription(String, "/tolerant", lambda msg: got.append(msg.data), 10)
    pub = node.create_publisher(String, "/tolerant", 10)
    executor = TolerantExecutor(lambda topic, error: reports.append((topic, str(error))), context=node.context)
    executor.add_node(node)
    pub.publish(String(data="a"))
    spin_until(executor, lambda: reports)
    pub.publish(String(data="b"))
    spin_until(executor, lambda: got)
    executor.shutdown()
    assert reports == [("/tolerant", UNCONVERTIBLE)]
    assert got == ["b"], "the failed message is dropped, the next one is delivered"


def test_a_cleanup_that_hangs_ends_the_process_with_its_stacks(child_env):
    """A hung teardown (as Fast DDS can do destroying a participant) must not need SIGKILL."""
    import signal
    import subprocess
    import sys
    import textwrap

    script = f"STUCK_S = {STUCK_S}\n" + textwrap.dedent("""
        import time
        from rclpy.node import Node
        from charm_ros.node.host import run_node

        class Stuck(Node):
            def __init__(self):
                super().__init__("stuck")
                self.create_timer(0.5, lambda: print("spinning", flush=True))

            def shutdown(self):
                time.sleep(STUCK_S)

        run_node(Stuck, "stuck")
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=child_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "spinning"
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=STUCK_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1 and "Timeout" in err and "shutdown" in err
    # ended by the host's cleanup timeout (4 s), not by the teardown returning: far sooner than STUCK_S
    assert time.monotonic() - start < STUCK_S / 2
