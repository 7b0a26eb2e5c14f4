"""One --help style for every command: the description as written, and each option's default shown."""
from __future__ import annotations

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends '(default: X)' to an option's help unless it has no meaningful default or says it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        empty = default is None or default is False or (isinstance(default, (str, list, tuple)) and not default)
        if empty or default == argparse.SUPPRESS or "default" in text or not action.option_strings:
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})".strip()
