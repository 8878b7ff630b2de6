"""`vistune exp`: DVC's experiments as one short row each, the params that differ first.

`dvc exp show --only-changed` prints every key of every metrics file (drift's `n_new`, `reason`, ...)
before the params, ~3,000 characters a row; this reads `dvc exp show --json` and prints the name,
only the params whose values differ between the rows shown, then the headline metrics and which
champion drift was measured against (`stale` when the gate compared with another), each row cut to
the terminal's width with a `+N more` marker instead of wrapping.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from app.report import HEADLINE, LOWER_IS_BETTER

CELL_MAX = 24  # a longer param value (a path, a list) is cut with "…"
# register's data/register/drift.json (integrations.champion.drift_check): one "drift vs" column
DRIFT_KEYS = ("drift_reference_version", "drift_gate_champion", "drift_stale")
GAP = "  "


@dataclass(frozen=True)
class ExpRow:
    """One line of the view: the workspace, a baseline commit or an experiment."""

    name: str
    params: dict
    metrics: dict


def _flatten(tree: dict, prefix: str = "") -> dict:
    """{"train": {"epochs": 4}} -> {"train.epochs": 4}: the key DVC's own table shows."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _row(name: str, data: dict | None) -> ExpRow:
    """The params (keys of params.yaml bare, of another file as `file:key`) and metrics of one entry."""
    params, metrics = {}, {}
    for path, result in ((data or {}).get("params") or {}).items():
        prefix = "" if path == "params.yaml" else f"{path}:"
        params.update(_flatten((result or {}).get("data") or {}, prefix))
    for result in ((data or {}).get("metrics") or {}).values():
        for key, value in _flatten((result or {}).get("data") or {}).items():
            metrics.setdefault(key, value)
    return ExpRow(name, params, metrics)


def parse_show(entries: list) -> list[ExpRow]:
    """The rows of `dvc exp show --json`, in DVC's order: workspace, each baseline, its experiments."""
    rows = []
    for entry in entries:
        name = entry.get("name") or (entry["rev"] if entry["rev"] == "workspace" else entry["rev"][:7])
        rows.append(_row(name, entry.get("data")))
        for group in entry.get("experiments") or []:
            for exp in group.get("revs") or []:
                rows.append(_row(exp.get("name") or exp["rev"][:7], exp.get("data")))
    return rows


def changed_params(rows: list[ExpRow]) -> list[str]:
    """The param keys whose values are not the same in every row (a key missing in one row counts)."""
    keys = sorted({k for row in rows for k in row.params})
    missing = object()
    return [k for k in keys if len({json.dumps(r.params.get(k, missing), default=id) for r in rows}) > 1]


def metric_keys(rows: list[ExpRow], all_metrics: bool = False) -> list[str]:
    """The headline keys present in some row, in HEADLINE's order; with `all_metrics`, every other
    numeric key after them, sorted."""
    present = {k for row in rows for k, v in row.metrics.items() if isinstance(v, (int, float))} - set(DRIFT_KEYS)
    keys = [key for _, key, _ in HEADLINE if key in present]
    return keys + (sorted(present - set(keys)) if all_metrics else [])


def sort_rows(rows: list[ExpRow], key: str) -> list[ExpRow]:
    """Best first for a metric (lowest for LOWER_IS_BETTER keys), ascending for a param; rows without
    the key go last. An unknown key is a ValueError that lists the valid ones."""
    if not any(key in r.metrics or key in r.params for r in rows):
        valid = sorted({k for r in rows for k in (*r.metrics, *r.params)})
        raise ValueError(f"--sort-by {key!r} is neither a metric nor a param here; valid keys: {', '.join(valid)}")
    is_metric = any(key in r.metrics for r in rows)
    descending = is_metric and key not in LOWER_IS_BETTER

    def order(row: ExpRow):
        value = (row.metrics if is_metric else row.params).get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return (1, str(value)) if value is not None else (2, "")
        return (0, -value if descending else value)

    return sorted(rows, key=order)


def _cell(value, key: str = "") -> str:
    """A value as the table shows it: HEADLINE's format for its keys, 4 significant digits for other
    floats, at most CELL_MAX characters."""
    if value is None:
        return "-"
    fmt = {k: f for _, k, f in HEADLINE}.get(key)
    if isinstance(value, float) and not isinstance(value, bool):
        text = fmt.format(value) if fmt else f"{value:.4g}"
    else:
        text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= CELL_MAX else text[: CELL_MAX - 1] + "…"


def drift_cell(metrics: dict) -> str:
    """Which champion drift was measured against: `v1`, or `stale: none, gate v2` when the gate compared
    with another champion (validate was cached; `dvc repro --force validate` measures it again)."""
    if "drift_stale" not in metrics:
        return "-"
    ref = metrics.get("drift_reference_version")
    measured = f"v{ref}" if ref is not None else "none"
    return f"stale: {measured}, gate v{metrics.get('drift_gate_champion')}" if metrics["drift_stale"] else measured


def _column(header: str, cells: list[str]) -> list[str]:
    width = max(len(header), *(len(c) for c in cells))
    return [header.ljust(width)] + [c.ljust(width) for c in cells]


def _drop_order(n_params: int, n_headline: int, n_metrics: int) -> list[tuple[int, int]]:
    """(params shown, metrics shown) from all to none: extra metrics go first, then params down to one,
    then headline metrics, then the last param, so a narrow line keeps the changed param and accuracy."""
    steps = [(n_params, m) for m in range(n_metrics, n_headline - 1, -1)]
    steps += [(p, n_headline) for p in range(n_params - 1, 0, -1)]
    steps += [(min(n_params, 1), m) for m in range(n_headline - 1, -1, -1)]
    return steps + [(0, 0)]


def format_table(rows: list[ExpRow], width: int = 120, all_metrics: bool = False) -> str:
    """The rows as text lines of at most `width` characters: name, the changed params, then metrics.
    Columns that do not fit are dropped (see _drop_order) and counted in a `+N more` column after the
    params, and after the metrics; a line is never wrapped."""
    if not rows:
        return "no experiments: run `dvc exp run` (or a Prefect training run) first"
    params, metrics = changed_params(rows), metric_keys(rows, all_metrics)
    name_col = _column("experiment", [r.name for r in rows])
    param_cols = [_column(k, [_cell(r.params.get(k)) for r in rows]) for k in params]
    metric_cols = [_column(k.removeprefix("test_"), [_cell(r.metrics.get(k), k) for r in rows]) for k in metrics]
    n_headline = len(metric_keys(rows))
    if any("drift_stale" in r.metrics for r in rows):  # a headline column, after accuracy and macro-F1
        at = min(2, n_headline)
        metric_cols.insert(at, _column("drift vs", [drift_cell(r.metrics) for r in rows]))
        metrics, n_headline = [*metrics[:at], "drift vs", *metrics[at:]], n_headline + 1

    def more(hidden: int) -> list[list[str]]:
        return [_column(f"+{hidden} more", [""] * len(rows))] if hidden else []

    def layout(n_params: int, n_metrics: int) -> list[list[str]]:
        return [
            name_col,
            *param_cols[:n_params],
            *more(len(params) - n_params),
            *metric_cols[:n_metrics],
            *more(len(metrics) - n_metrics),
        ]

    for n_params, n_metrics in _drop_order(len(params), n_headline, len(metrics)):
        cols = layout(n_params, n_metrics)
        if sum(len(c[0]) for c in cols) + len(GAP) * (len(cols) - 1) <= width:
            break
    lines = [GAP.join(c[i] for c in cols).rstrip()[:width] for i in range(len(rows) + 1)]
    if not params:
        lines.append("(no param differs between these rows)")
    return "\n".join(lines)


def show_json(root: Path) -> list:
    """`dvc exp show --json` run in `root`, parsed; a failure is a ValueError with DVC's own message."""
    from flows.dvc_cli import dvc_output

    proc = dvc_output(["exp", "show", "--json"], cwd=root)
    if proc.returncode != 0:
        raise ValueError(
            (proc.stderr or proc.stdout).strip().splitlines()[-1]
            if (proc.stderr or proc.stdout)
            else f"`dvc exp show --json` failed with exit code {proc.returncode}"
        )
    return json.loads(proc.stdout or "[]")


def add_parser(sub) -> None:
    e = sub.add_parser("exp", help="DVC experiments, one row each: changed params, then headline metrics")
    e.add_argument(
        "--width",
        type=int,
        default=None,
        help="line width in characters (default: the terminal's, 120 when not a terminal)",
    )
    e.add_argument("--all-metrics", action="store_true", help="every numeric metric after the headline ones")
    e.add_argument("--sort-by", metavar="KEY", help="a metric (best first) or param key (ascending)")


def main(args: argparse.Namespace) -> int:
    try:
        rows = parse_show(show_json(Path(args.root).resolve()))
        if args.sort_by:
            rows = sort_rows(rows, args.sort_by)
    except ValueError as exc:
        print(f"vistune exp: error: {exc}", file=sys.stderr)
        return 2
    width = args.width or shutil.get_terminal_size((120, 24)).columns
    print(format_table(rows, width, args.all_metrics))
    return 0
