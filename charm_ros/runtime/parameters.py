"""Node parameters as tables: one ParamSpec per parameter, so a parameter's default, meaning and limits
are written once and serve every node (the charm node, the sim rig, the demo report): the node
declares them, `<executable> --help` and the README list them, and `ParamSpec.check` validates them.

`ros2 param describe` needs a running node and ros2cli (absent from pip installs); `--help` needs neither.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Iterable


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

    def check(self, value: Any) -> None:
        """Raise ConfigError naming the parameter if `value` has the wrong type or is out of range."""
        default = self.default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        else:
            ok = isinstance(value, (list, tuple))
        if not ok:
            raise ConfigError(f"parameter {self.name} must be of the type of {default!r}, got {value!r}")
        if self.choices and value not in self.choices:
            raise ConfigError(f"parameter {self.name} must be one of {list(self.choices)}, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"parameter {self.name} must be >= {self.minimum}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            bound = f"<= {self.maximum:g}" if self.minimum is None else f"in [{self.minimum:g}, {self.maximum:g}]"
            raise ConfigError(f"parameter {self.name} must be {bound}, got {value!r}")

    def bounds(self) -> str:
        """'one of a, b; >= 0; <= 1', or '' when the value is free."""
        return "; ".join(([f"one of {', '.join(c or repr(c) for c in self.choices)}"] if self.choices else []) +
                         ([f">= {self.minimum:g}"] if self.minimum is not None else []) +
                         ([f"<= {self.maximum:g}"] if self.maximum is not None else []))


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
