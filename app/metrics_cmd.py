"""`vistune metrics`: the pipeline's figures in a table that fits a terminal.

`dvc metrics show` prints every key of every metrics file on one line per file (~1,800 characters
for the demo); this prints the dozen figures people look at first, one per line, from the same
files (`vistune metrics --all` lists every numeric key, one per line; `dvc metrics diff` compares
commits and experiments).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from app.report import HEADLINE, read_json
from vistune.layout import Layout

MORE_EVAL = (
    ("top-5 accuracy", "test_top5_accuracy", "{:.4f}"),
    ("ECE before temperature scaling", "test_ece_uncalibrated", "{:.4f}"),
    ("FGSM / PGD accuracy", ("test_fgsm_accuracy", "test_pgd_accuracy"), "{:.4f}"),
    ("latency p95 (ms / image)", "test_latency_p95_ms", "{:.2f}"),
)
DATA = (
    ("images good / quarantined", ("n_good", "n_quarantined"), "{}"),
    ("train / val / test", ("n_train", "n_val", "n_test"), "{}"),
    ("classes, imbalance ratio", ("n_classes", "imbalance_ratio"), "{}"),
    ("leaked, look-alikes, near duplicates", ("n_leaked", "n_leaked_lookalike", "n_near_duplicates"), "{}"),
)
TRAIN = (
    ("epochs run, best val accuracy", ("epochs_run", "best_val_accuracy"), "{}"),
    ("train images / s", "images_per_s", "{:.1f}"),
)


def _rows(values: dict, spec) -> list[tuple[str, str]]:
    """(label, value text) for each spec row whose keys are all present; several keys in one row are
    joined with ", " when the label lists them with commas, else " / "."""
    rows = []
    for label, keys, fmt in spec:
        keys = (keys,) if isinstance(keys, str) else keys
        if all(k in values for k in keys):
            shown = [
                f"{values[k]:.4g}" if fmt == "{}" and isinstance(values[k], float) else fmt.format(values[k])
                for k in keys
            ]
            rows.append((label, (", " if "," in label else " / ").join(shown)))
    return rows


def table(root: Path, show_all: bool = False) -> str:
    """The metrics of the workspace at `root` as text lines of at most ~70 characters."""
    layout = Layout(root)
    files = {layout.eval_metrics: HEADLINE + MORE_EVAL, layout.validation_summary: DATA, layout.train_metrics: TRAIN}
    lines = []
    for path, spec in files.items():
        values = read_json(path)
        if not values:
            continue
        rel = path.relative_to(root) if path.is_relative_to(root) else path
        rows = (
            [
                (k, f"{v:.6g}" if isinstance(v, float) else str(v))
                for k, v in sorted(values.items())
                if isinstance(v, (int, float))
            ]
            if show_all
            else _rows(values, spec)
        )
        lines += [str(rel)] + [f"  {label:<34} {value}" for label, value in rows] + [""]
    if not lines:
        return f"no metrics under {root}/data yet: run `dvc repro` (or `make demo`)"
    return "\n".join(lines).rstrip()


def add_parser(sub) -> None:
    m = sub.add_parser("metrics", help="the pipeline's headline figures, one per line (dvc metrics show, readable)")
    m.add_argument("--all", action="store_true", help="every numeric key of every metrics file, one per line")


def main(args: argparse.Namespace) -> int:
    print(table(Path(args.root).resolve(), args.all))
    return 0
