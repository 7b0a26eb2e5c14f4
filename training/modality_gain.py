"""What adding one modality does to every subset, per condition, from `charm-eval --details`.

    python training/modality_gain.py --details out/eval5/details.json --add thermal --with rgb \
        --conditions night fog

For every evaluated subset S that holds the `--with` modalities and not `--add`, the row pairs S with
S + add (found by its members, named as charm-eval names it): mIoU over the classes present, per
condition, and the difference. The last line counts the pairs where adding helped.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def gain_table(details: dict, add: str, required: list[str], conditions: list[str]) -> tuple[str, int, int]:
    """(markdown table, pairs where adding raised mIoU in every condition, pairs)."""
    per_condition = details["per_condition"]
    names = list(details["subsets"])
    by_members = {frozenset(n.split("+")): n for n in names}
    evaluated = sorted(set().union(*by_members))
    if add not in evaluated:
        raise ValueError(f"{add} is not among the evaluated modalities {evaluated}")
    missing = [c for c in conditions if not any(c in conds for conds in per_condition.values())]
    if missing:
        raise ValueError(f"no frames of condition {missing} in these details")
    head = ["subset", f"+ {add}"] + [f"{c}: without / with / gain" for c in conditions]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * len(conditions)]
    helped = pairs = 0
    for name in names:
        members = name.split("+")
        if add in members or not all(r in members for r in required):
            continue
        other = by_members.get(frozenset(members) | {add})
        if other is None:
            continue
        cells, all_up = [], True
        for c in conditions:
            without = per_condition[name][c]["miou_present"]
            with_ = per_condition[other][c]["miou_present"]
            all_up &= with_ > without
            cells.append(f"{without:.1f} / {with_:.1f} / {with_ - without:+.1f}")
        pairs += 1
        helped += all_up
        lines.append(f"| {name} | {other} | " + " | ".join(cells) + " |")
    lines.append(f"\nAdding {add} raised mIoU in {' and '.join(conditions)} for {helped} of {pairs} subsets"
                 + (f" with {'+'.join(required)}" if required else "") + ".")
    return "\n".join(lines), helped, pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--details", required=True, type=Path, help="charm-eval --details output (JSON)")
    parser.add_argument("--add", required=True, help="the modality added to each subset, e.g. thermal")
    parser.add_argument("--with", dest="required", nargs="*", default=[],
                        help="only subsets holding these modalities (e.g. rgb)")
    parser.add_argument("--conditions", nargs="+", required=True, help="conditions to report, e.g. night fog")
    args = parser.parse_args(argv)
    try:
        table, _, pairs = gain_table(json.loads(args.details.read_text()), args.add, args.required, args.conditions)
    except (OSError, ValueError, KeyError) as exc:
        print(f"modality_gain: {exc}", file=sys.stderr)
        return 2
    print(table)
    return 0 if pairs else 1


if __name__ == "__main__":
    sys.exit(main())
