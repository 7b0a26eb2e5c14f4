"""Node parameters as tables: one ParamSpec per parameter, declared with a descriptor and listed by
`<executable> --help`, so a parameter's default and meaning are written once.

`ros2 param describe` needs a running node and ros2cli (absent from pip installs); `--help` needs neither.
Nothing here imports rclpy at module level: the tables are also read by ROS-free code (node_config).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from rclpy.node import Node


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    dynamic: bool = False          # may change while running
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None


def declare(node: Node, specs: Iterable[ParamSpec]) -> dict[str, Any]:
    """Declare every parameter (read-only unless dynamic) and return {name: value} as given at start."""
    from rcl_interfaces.msg import ParameterDescriptor

    values = {}
    for spec in specs:
        node.declare_parameter(spec.name, spec.default, ParameterDescriptor(
            description=spec.description, read_only=not spec.dynamic))
        values[spec.name] = node.get_parameter(spec.name).value
    return values


def help_text(program: str, node_name: str, summary: str, specs: Iterable[ParamSpec]) -> str:
    """The `--help` page: usage, what the node does, and its parameters with defaults (as -p takes them)."""
    specs = list(specs)
    lines = [f"usage: {program} [--ros-args [-p NAME:=VALUE]... [--params-file FILE] [-r FROM:=TO]...]", ""]
    if summary:
        lines += [summary.strip(), ""]
    lines.append(f"parameters of node '{node_name}' (* = can be changed at run time):")
    width = max((len(s.name) for s in specs), default=0) + 2
    for s in specs:
        bounds = ([f"one of {', '.join(s.choices)}"] if s.choices else []) + \
            ([f">= {s.minimum:g}"] if s.minimum is not None else []) + \
            ([f"<= {s.maximum:g}"] if s.maximum is not None else [])
        extra = f" ({'; '.join(bounds)})" if bounds else ""
        lines.append(f"  {s.name:<{width}}{'*' if s.dynamic else ' '} default {json.dumps(s.default)}")
        lines.append(f"  {'':<{width}}  {s.description}{extra}")
    return "\n".join(lines)
