"""QoS mismatches in words (runtime/qos.py): what a publisher or subscriber the node cannot match is told,
with the fix; durability, type, silence and events are named."""
from charm_ros.runtime.qos import Endpoint, input_warning, output_warning

NODE = Endpoint("/charm", "sensor_msgs/msg/Image", "reliable", "volatile")


def test_a_best_effort_publisher_to_a_reliable_input_is_named_with_the_fix():
    text = input_warning("/cam/image", NODE, [Endpoint("/driver", NODE.type, "best_effort", "volatile")], None, 3.0)
    assert "/cam/image" in text and "/driver" in text and "(reliability)" in text
    assert "qos.input_reliability to best_effort" in text
    ok = Endpoint("/driver", NODE.type, "reliable", "volatile")
    assert input_warning("/cam/image", NODE, [ok], None, 3.0) == ""
    best_effort_node = Endpoint("/charm", NODE.type, "best_effort", "volatile")
    assert input_warning("/cam/image", best_effort_node, [ok, Endpoint("/b", NODE.type, "best_effort", "volatile")],
                         None, 3.0) == "", "best effort matches every publisher"


def test_durability_type_silence_and_events_are_named():
    latched = Endpoint("/charm", "sensor_msgs/msg/CameraInfo", "reliable", "transient_local")
    volatile = Endpoint("/cal", "sensor_msgs/msg/CameraInfo", "reliable", "volatile")
    assert "(durability)" in input_warning("/info", latched, [volatile], None, 3.0)
    compressed = Endpoint("/cam", "sensor_msgs/msg/CompressedImage", "reliable", "volatile")
    text = input_warning("/img", NODE, [compressed], None, 3.0)
    assert "publishes sensor_msgs/msg/CompressedImage" in text and "/compressed" in text
    fine = Endpoint("/cam", NODE.type, "reliable", "volatile")
    assert input_warning("/img", NODE, [fine], 2.0, 3.0) == "", "not silent for long enough"
    assert "nothing received for 3.5 s" in input_warning("/img", NODE, [fine], 3.5, 3.0)
    assert "(deadline)" in input_warning("/img", NODE, [fine], None, 3.0, event_policy="deadline")
    undiscovered = Endpoint("", NODE.type, "best_effort", "volatile")  # its node not known yet
    assert input_warning("/img", NODE, [undiscovered], None, 3.0).startswith("/img: a publisher publishes best_effort")


def test_an_output_subscriber_asking_for_more_than_is_offered_is_named():
    ours = Endpoint("/charm", "sensor_msgs/msg/Image", "best_effort", "volatile")
    rviz = Endpoint("/rviz", ours.type, "reliable", "transient_local")
    text = output_warning("/charm/mask", ours, [rviz])
    assert "/charm/mask: /rviz subscribes reliable" in text and "qos.output_reliability to reliable" in text
    assert "(durability)" in text
    assert output_warning("/charm/mask", ours, [Endpoint("/v", ours.type, "best_effort", "volatile")]) == ""
