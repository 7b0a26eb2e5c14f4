"""`python -m charm_ros.tools.param_table [--check]`: write the parameter tables of the README (the node's)
and docs/modalities.md (a further camera's) from the ParamSpec tables, so a parameter's row is written
once (its ParamSpec); --check exits 1 if a document differs (the test suite runs the same comparison)."""
from __future__ import annotations

import argparse
import re
import sys

from charm_core.cli_help import HelpFormatter
from charm_core.modalities import BUILTIN
from charm_ros.paths import share_path
from charm_ros.runtime.node_config import PARAMETERS, camera_params
from charm_ros.runtime.parameters import ParamSpec, markdown_table


def tables() -> dict[str, dict[str, tuple[ParamSpec, ...]]]:
    """Document (relative to the package) -> {table name: its parameters}, for every generated table."""
    return {"README.md": {"charm": PARAMETERS},
            "docs/modalities.md": {"charm_thermal": tuple(camera_params(BUILTIN["thermal"]))}}


def render(text: str, document: str = "README.md") -> str:
    """`text` (the document's) with each `<!-- parameters: NAME ... -->` ... `<!-- end parameters: NAME -->`
    block refilled."""
    for name, specs in tables()[document].items():
        pattern = re.compile(rf"(<!-- parameters: {name}\b[^\n]*-->\n).*?(<!-- end parameters: {name} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"{document} has no '<!-- parameters: {name} -->' block")
        text = pattern.sub(lambda m: m.group(1) + markdown_table(specs) + "\n" + m.group(2), text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m charm_ros.tools.param_table", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if a document is out of date")
    args = parser.parse_args(argv)
    stale = []
    for document in tables():
        path = share_path(document)
        text = path.read_text()
        new = render(text, document)
        if new != text and not args.check:
            path.write_text(new)
        stale += [path] if new != text else []
    if args.check and stale:
        print(f"{', '.join(map(str, stale))}: parameter tables out of date; run python -m charm_ros.tools.param_table",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
