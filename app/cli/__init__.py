"""`vistune` command: `init` (a params.yaml recipe for a data source), `metrics`, `exp`, `labels` (review), registry
actions (promote, rollback, archive, status, history, lineage, card), serving and batch scoring (`score`).

Each registry action is also a Prefect flow in `flows/promote.py`; both call `integrations.registry`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from app import exp_cmd, init_cmd, labels_cmd, metrics_cmd
from app.cli import registry_cmds, score_cmd, serve_cmd
from vistune.config import load_params
from vistune.errors import VistuneError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vistune", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    sub = parser.add_subparsers(dest="cmd", required=True)
    registry_cmds.add_parsers(sub)
    serve_cmd.add_parser(sub)
    init_cmd.add_parser(sub)
    metrics_cmd.add_parser(sub)
    exp_cmd.add_parser(sub)
    labels_cmd.add_parser(sub)
    score_cmd.add_parser(sub)
    return parser


def _on_registry(args: argparse.Namespace) -> int:
    """A command that needs the registry: open it once, run the action; a user's mistake (unknown
    version or alias, bad params) is one line on stderr and exit code 2."""
    from mlflow.exceptions import MlflowException

    from flows import cross_host_lock
    from integrations import tracking

    try:
        cfg = load_params(args.params).register
        root = Path(args.root).resolve()
        client, lock = tracking.open_registry(cfg, root, shared=cross_host_lock.hold)
        if args.cmd == "serve":
            return serve_cmd.run(args, client, cfg, root)
        else:
            registry_cmds.run(args, client, lock, cfg.model_name, metric=cfg.gate_metric)
    except (VistuneError, ValueError, MlflowException) as exc:
        print(f"vistune {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "init":  # no registry: it only reads the data and writes params.yaml
        return init_cmd.main(args, args.params)
    if args.cmd == "metrics":  # no registry: the workspace's metrics files
        return metrics_cmd.main(args)
    if args.cmd == "exp":  # no registry: `dvc exp show --json`, readable
        return exp_cmd.main(args)
    if args.cmd == "labels":  # no registry: label_issues.csv -> labels.csv
        return labels_cmd.main(args)
    if args.cmd == "score":
        return score_cmd.main(args)
    return _on_registry(args)


if __name__ == "__main__":
    sys.exit(main())
