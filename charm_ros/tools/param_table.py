"""`python -m charm_ros.tools.param_table [--check]`: write the README's parameter tables from the
ParamSpec tables, so a parameter's row is written once (its ParamSpec); --check exits 1 if the README
differs (the test suite runs the same comparison)."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from charm_core.cli_help import HelpFormatter
from charm_ros.paths import share_path
from charm_core.modalities import BUILTIN
from charm_ros.runtime.node_config import PARAMETERS, camera_params
from charm_ros.runtime.parameters import ParamSpec, markdown_table


def tables() -> dict[str, tuple[ParamSpec, ...]]:
    """Node name -> its parameters, for every table the README carries."""
    return {"charm": PARAMETERS, "charm_thermal": tuple(camera_params(BUILTIN["thermal"]))}


def render(readme: str) -> str:
    """The README with each `<!-- parameters: NAME ... -->` ... `<!-- end parameters: NAME -->` block refilled."""
    for name, specs in tables().items():
        pattern = re.compile(rf"(<!-- parameters: {name}\b[^\n]*-->\n).*?(<!-- end parameters: {name} -->)", re.S)
        if not pattern.search(readme):
            raise ValueError(f"README has no '<!-- parameters: {name} -->' block")
        readme = pattern.sub(lambda m: m.group(1) + markdown_table(specs) + "\n" + m.group(2), readme)
    return readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m charm_ros.tools.param_table", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--readme", type=Path, default=share_path("README.md"), help="default: %(default)s")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if the README is out of date")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print(f"{args.readme}: parameter tables out of date; run python -m charm_ros.tools.param_table",
                  file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
