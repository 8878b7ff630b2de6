"""`vistune score SOURCE`: predictions.csv (+ quarantine, drift, summary) for a folder, archive or CSV,
tracked by DVC."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vistune.config import load_params
from vistune.errors import VistuneError


def add_parser(sub) -> None:
    sc = sub.add_parser("score", help="score a folder, archive or CSV of images with a registered model")
    sc.add_argument(
        "source", help="folder (any files; <class>/<image> keeps labels), .zip/.tar(.gz), or .csv (path[,label])"
    )
    which = sc.add_mutually_exclusive_group()
    which.add_argument("--version", default=None, help="model version number")
    which.add_argument("--alias", default="champion", help="model alias (default: champion)")
    sc.add_argument("--out", default=None, help="output folder (default: data/score)")
    sc.add_argument("--no-dvc", action="store_true", help="do not `dvc add` predictions.csv")
    sc.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from app import scoring
    from vistune.layout import Layout

    root = Path(args.root).resolve()
    out = Path(args.out) if args.out else Layout(root).score_dir
    try:
        result = scoring.score(
            args.source,
            load_params(args.params),
            root,
            out,
            alias=args.alias,
            version=args.version,
            progress=not args.no_progress,
        )
        tracked = None if args.no_dvc else scoring.track_with_dvc(out / "predictions.csv", root)
    except (VistuneError, ValueError) as exc:
        print(f"vistune score: error: {exc}", file=sys.stderr)
        return 2
    print(scoring.report(result))
    if tracked is not None:
        print(f"  tracked by DVC: git add {tracked.relative_to(root)} (and its .gitignore) to version these scores")
    return 0
