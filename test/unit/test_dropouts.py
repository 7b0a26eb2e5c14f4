"""The dropout schedule shared by the rig, the bag evaluator and the demo report."""
import pytest

from charm_ros.runtime.dropouts import Dropout, dropped_at, parse_dropouts, phases


def test_parse_and_query():
    d = parse_dropouts("depth:5-10, rgb:12-20,all:30-32")
    assert d[:2] == [Dropout("depth", 5, 10), Dropout("rgb", 12, 20)]
    assert len(d) == 6
    assert dropped_at(d, 4.99) == set()
    assert dropped_at(d, 5.0) == {"depth"}
    assert dropped_at(d, 10.0) == set()          # half-open
    assert dropped_at(d, 31) == {"rgb", "depth", "event", "lidar"}
    assert parse_dropouts("") == []


@pytest.mark.parametrize("bad", ["depth5-10", "depth:10-5", "sonar:1-2", "rgb:a-b", "rgb:3"])
def test_bad_schedules_are_rejected(bad):
    with pytest.raises(ValueError):
        parse_dropouts(bad)


def test_phases_split_at_every_boundary_and_merge_equal_neighbours():
    p = phases(parse_dropouts("depth:5-10,rgb:8-12,lidar:12-14"), 20.0)
    assert [(x.start, x.end, x.name) for x in p] == [
        (0, 5, "rgb+depth+event+lidar"), (5, 8, "rgb+event+lidar"), (8, 10, "event+lidar"),
        (10, 12, "depth+event+lidar"), (12, 14, "rgb+depth+event"), (14, 20, "rgb+depth+event+lidar")]
    assert phases(parse_dropouts("all:2-3"), 5)[1].name == "none"
