"""The README's demo figures, generated from the committed metrics instead of typed.

    python benchmarks/readme_figures.py           # rewrite the block between the markers in README.md
    python benchmarks/readme_figures.py --check   # exit 1 when README.md disagrees with data/eval/metrics.json

The block sits between `<!-- demo-figures:begin -->` and `<!-- demo-figures:end -->`; rerun this
after the pipeline rewrote `data/eval/metrics.json` (tests/test_lock_fresh.py checks it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- demo-figures:begin -->", "<!-- demo-figures:end -->"


def render(metrics: dict) -> str:
    """One sentence with the headline test figures of the committed demo run."""
    return (
        f"Committed demo result (`data/eval/metrics.json`, {int(metrics['test_n'])} test images): "
        f"test accuracy {metrics['test_accuracy']:.4f}, macro-F1 {metrics['test_macro_f1']:.4f}, "
        f"ECE {metrics['test_ece']:.3f} after temperature scaling "
        f"({metrics['test_ece_uncalibrated']:.3f} before)."
    )


def replace_block(readme: str, body: str) -> str:
    if readme.count(BEGIN) != 1 or readme.count(END) != 1:
        raise SystemExit(f"README.md: expected one {BEGIN} ... {END} block; add the two markers where the figures go")
    head, rest = readme.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{body}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when README.md is stale")
    parser.add_argument("--root", type=Path, default=REPO)
    args = parser.parse_args(argv)
    readme_path = args.root / "README.md"
    metrics = json.loads((args.root / "data" / "eval" / "metrics.json").read_text())
    readme = readme_path.read_text()
    wanted = replace_block(readme, render(metrics))
    if args.check:
        if wanted != readme:
            print(
                f"{readme_path}: demo figures differ from data/eval/metrics.json; run "
                f"`python benchmarks/readme_figures.py`",
                file=sys.stderr,
            )
            return 1
        print("README.md figures match data/eval/metrics.json")
        return 0
    readme_path.write_text(wanted)
    print(render(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
