"""Parameter checks (runtime/parameters.py) as users give values: whole numbers for floats, lists element by
element, every mistake in one error. The nodes' command lines: test/integration/test_node_command_line.py."""
import pytest

from charm_ros.runtime.parameters import ConfigError, ParamSpec, check_all

SPECS = (ParamSpec("fps", 10.0, "rate", minimum=0.0), ParamSpec("size", [256, 256], "hw"),
         ParamSpec("scale", [1.0, 2.0], "floats"), ParamSpec("name", "x", "text"), ParamSpec("on", True, "flag"))


def test_whole_numbers_are_floats_and_lists_are_checked_element_by_element():
    values = check_all(SPECS, {"fps": 40, "scale": [1, 2.5]})
    assert values["fps"] == 40.0 and isinstance(values["fps"], float)
    assert values["scale"] == [1.0, 2.5] and all(isinstance(x, float) for x in values["scale"])
    with pytest.raises(ConfigError, match=r"size must be a list of ints"):
        check_all(SPECS, {"size": ["a", "b"]})
    with pytest.raises(ConfigError, match=r"on must be a bool"):
        check_all(SPECS, {"on": 1})


def test_every_bad_value_is_reported_in_one_error():
    with pytest.raises(ConfigError) as err:
        check_all(SPECS, {"fps": "fast", "size": [1.5, 2], "name": 3, "on": "yes"})
    text = str(err.value)
    assert text.startswith("4 parameter errors:")
    for name in ("fps", "size", "name", "on"):
        assert f"parameter {name} " in text


def test_a_string_for_a_number_at_run_time_is_refused():
    spec = ParamSpec("sync.timeout", 0.1, "", dynamic=True, minimum=0.0)
    assert spec.check(1) == 1.0
    with pytest.raises(ConfigError, match="must be a float"):
        spec.check("fast")
