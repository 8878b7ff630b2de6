"""`vistune labels`: review the images `validate` flagged as mislabelled and record decisions.

Lists the top suspects of data/validated/label_issues.csv (given vs suggested label, score). `--accept N`
takes the suggestion of the N most suspicious; `--exclude PATH` (repeatable) leaves an image out. The
decisions go into `labels.csv` (`vistune.data.label_overrides`), merged with the earlier ones; `ingest`
applies it on the next `dvc repro`, and `dvc metrics diff` shows what changed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from vistune.data import label_overrides
from vistune.errors import DataError, VistuneError
from vistune.layout import Layout


def add_parser(sub) -> None:
    p = sub.add_parser("labels", help="list images whose label looks wrong; accept suggestions or exclude images")
    p.add_argument("--top", type=int, default=20, help="how many suspects to list (default 20)")
    p.add_argument("--accept", type=int, default=0, metavar="N", help="take the suggested label of the top N")
    p.add_argument("--exclude", action="append", default=[], metavar="PATH", help="leave this image out (repeatable)")


def suspects(layout: Layout) -> pd.DataFrame:
    if not layout.label_issues.is_file():
        raise DataError(f"{layout.label_issues}: not found; run `dvc repro validate` first")
    return pd.read_csv(
        layout.label_issues, dtype={"path": str, "given_label": str, "suggested_label": str}, keep_default_na=False
    )


def table(issues: pd.DataFrame, decided: dict[str, str], top: int) -> str:
    if issues.empty:
        return "no label issues flagged (data/validated/label_issues.csv is empty)"
    lines = [f"{'#':>3}  {'score':>5}  {'given':<16} {'suggested':<16} {'decision':<12} path"]
    for i, r in enumerate(issues.head(top).itertuples(), start=1):
        lines.append(
            f"{i:>3}  {r.score:5.3f}  {r.given_label:<16} {r.suggested_label:<16} "
            f"{decided.get(r.path, '-'):<12} {r.path}"
        )
    if len(issues) > top:
        lines.append(f"... {len(issues) - top} more (--top {len(issues)})")
    return "\n".join(lines)


def decide(issues: pd.DataFrame, decided: dict[str, str], accept: int, exclude: list[str]) -> dict[str, str]:
    """Earlier decisions updated with the top `accept` suggestions and the `exclude` paths."""
    out = dict(decided)
    for r in issues.head(accept).itertuples():
        out[r.path] = r.suggested_label
    for path in exclude:
        out[path] = label_overrides.EXCLUDE
    return out


def main(args: argparse.Namespace) -> int:
    """Run `labels`; a user's mistake is one line on stderr and exit code 2."""
    try:
        return _run(args)
    except VistuneError as exc:
        print(f"vistune labels: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    layout = Layout(Path(args.root))
    issues = suspects(layout)
    decided = label_overrides.read(layout.label_overrides) if layout.label_overrides.is_file() else {}
    if args.accept or args.exclude:
        new = decide(issues, decided, args.accept, args.exclude)
        label_overrides.write(layout.label_overrides, new)
        print(
            f"{layout.label_overrides}: {len(new) - len(decided)} new decision(s), {len(new)} in all; "
            "`dvc repro` applies them, `dvc metrics diff` shows the change"
        )
        decided = new
    print(table(issues, decided, args.top))
    return 0
