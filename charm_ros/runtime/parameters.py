"""Node parameters as tables: one ParamSpec per parameter, so a parameter's default, meaning and limits
are written once and serve every node (the charm node, the sim rig, the demo report): the node
declares them, `<executable> --help` and the README list them, and `ParamSpec.check` validates them.

`ros2 param describe` needs a running node and ros2cli (absent from pip installs); `--help` needs neither.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml


class ConfigError(ValueError):
    """A parameter value a node cannot run with; the message names the parameter."""


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    dynamic: bool = False          # may change while running
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    def check(self, value: Any) -> Any:
        """The value as the node uses it (a whole number for a float parameter becomes a float, as
        `duration:=40` gives an integer); ConfigError naming the parameter if it has the wrong type
        or is out of range."""
        default = self.default
        if isinstance(default, (list, tuple)):
            kind = _kind(default[0]) if default else None
            ok = isinstance(value, (list, tuple)) and (kind is None or all(_is(kind, x) for x in value))
            if not ok:
                raise ConfigError(f"parameter {self.name} must be a list of {kind or 'values'}s such as "
                                  f"{list(default)}, got {value!r}")
            return [float(x) for x in value] if kind == "float" else list(value)
        if not _is(_kind(default), value):
            raise ConfigError(f"parameter {self.name} must be a {_kind(default)} such as {default!r}, got {value!r}")
        if isinstance(default, float):
            value = float(value)
        if self.choices and value not in self.choices:
            raise ConfigError(f"parameter {self.name} must be one of {list(self.choices)}, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"parameter {self.name} must be >= {self.minimum}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            bound = f"<= {self.maximum:g}" if self.minimum is None else f"in [{self.minimum:g}, {self.maximum:g}]"
            raise ConfigError(f"parameter {self.name} must be {bound}, got {value!r}")
        return value

    def bounds(self) -> str:
        """'one of a, b; >= 0; <= 1', or '' when the value is free."""
        return "; ".join(([f"one of {', '.join(c or repr(c) for c in self.choices)}"] if self.choices else []) +
                         ([f">= {self.minimum:g}"] if self.minimum is not None else []) +
                         ([f"<= {self.maximum:g}"] if self.maximum is not None else []))


def _kind(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "string"}.get(type(value), "value")


def _is(kind: str, value: Any) -> bool:
    """Whether `value` is acceptable where a parameter of `kind` is expected (an int is a float too)."""
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "string":
        return isinstance(value, str)
    return True


def check_all(specs: Iterable[ParamSpec], values: dict[str, Any]) -> dict[str, Any]:
    """Every value checked (and coerced) at once; one ConfigError listing every bad parameter, so a file
    with four mistakes is fixed in one round."""
    out, errors = {}, []
    for spec in specs:
        try:
            out[spec.name] = spec.check(values.get(spec.name, spec.default))
        except ConfigError as exc:
            errors.append(str(exc))
    if errors:
        raise ConfigError("\n".join(errors) if len(errors) == 1 else
                          f"{len(errors)} parameter errors:\n  " + "\n  ".join(errors))
    return out


def help_text(program: str, node_name: str, summary: str, specs: Iterable[ParamSpec]) -> str:
    """The `--help` page: usage, what the node does, and its parameters with defaults (as -p takes them)."""
    specs = list(specs)
    lines = [f"usage: {program} [--ros-args [-p NAME:=VALUE]... [--params-file FILE] [-r FROM:=TO]...]", ""]
    if summary:
        lines += [summary.strip(), ""]
    lines.append(f"parameters of node '{node_name}' (* = can be changed at run time):")
    width = max((len(s.name) for s in specs), default=0) + 2
    for s in specs:
        extra = f" ({s.bounds()})" if s.bounds() else ""
        lines.append(f"  {s.name:<{width}}{'*' if s.dynamic else ' '} default {json.dumps(s.default)}")
        lines.append(f"  {'':<{width}}  {s.description}{extra}")
    return "\n".join(lines)


def markdown_table(specs: Iterable[ParamSpec]) -> str:
    """The README's parameter table (a test keeps the README equal to it)."""
    lines = ["| parameter | default | run time | meaning |", "|---|---|---|---|"]
    for s in specs:
        extra = f" ({s.bounds()})" if s.bounds() else ""
        meaning = f"{s.description}{extra}".replace("|", "\\|")
        lines.append(f"| `{s.name}` | `{json.dumps(s.default)}` | {'yes' if s.dynamic else ''} | {meaning} |")
    return "\n".join(lines)


def load_param_file(path: str | Path, node_name: str = "charm") -> dict[str, Any]:
    """Flat {dotted.name: value} from a ROS 2 parameter file (`/**` and `<node_name>` sections merged),
    so tools outside ROS (the bag evaluator) run with exactly the node's parameters."""
    doc = yaml.safe_load(Path(path).read_text()) or {}
    values: dict[str, Any] = {}
    for section in ("/**", node_name, f"/{node_name}"):
        params = (doc.get(section) or {}).get("ros__parameters", {})
        values.update(_flatten(params))
    if not values:
        raise ConfigError(f"{path}: no ros__parameters for '/**' or '{node_name}'")
    return values


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
