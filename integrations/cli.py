"""`vistune` command: `init` (a params.yaml recipe for a data source), `metrics`, registry actions (promote,
rollback, archive, status, history, lineage, card), serving and batch scoring (`score`).

Each action is also a Prefect flow in `flows/promote.py`; both call `integrations.registry`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from app import labels_cmd
from integrations import init_cmd, metrics_cmd
from vistune.config import load_params
from vistune.errors import VistuneError


def _status(client, name: str) -> None:
    from integrations import history
    from integrations.registry import TAG_PREFIX

    for drift in history.check(client, name):
        print(f"WARNING: {drift.line(name)}")
    found = client.search_model_versions(f"name='{name}'")
    # search results leave `aliases` empty on some stores; fetch each version for its aliases
    versions = sorted((client.get_model_version(name, v.version) for v in found), key=lambda v: int(v.version))
    if not versions:
        print(f"no versions of {name!r} registered yet; run `make demo` or `dvc repro`")
        return
    print(f"{'version':>7}  {'aliases':<22} {'gate':<9} last action")
    for mv in versions:
        aliases = ",".join(sorted(mv.aliases or []))
        variant = mv.tags.get(TAG_PREFIX + "variant")
        last = f"variant {variant} of v{mv.tags.get(TAG_PREFIX + 'variant_of')}" if variant else (mv.description or "")
        print(f"{mv.version:>7}  {aliases:<22} {mv.tags.get(TAG_PREFIX + 'gate', '-'):<9} {last}")


def _lineage(client, name: str, version: str, params_out: str | None) -> None:
    from integrations import lineage

    print(lineage.describe(client, name, version))
    if params_out:
        import yaml

        from vistune.io import write_text

        write_text(Path(params_out), yaml.safe_dump(lineage.version_params(client, name, version), sort_keys=False))
        print(f"wrote v{version}'s params to {params_out}")


def serve_command(model_uri: str, host: str, port: int) -> list[str]:
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    return [str(mlflow_bin), "models", "serve", "-m", model_uri, "--env-manager", "local",
            "--host", host, "--port", str(port)]


def serving_banner(name: str, version: str, alias: str, host: str, port: int, env: dict) -> str:
    """The startup line: what is served (model, version, alias), where, and where `path` inputs may point."""
    from integrations.pyfunc_model import IMAGE_ROOT_ENV

    root = Path(env.get(IMAGE_ROOT_ENV) or os.getcwd()).resolve()
    return (f"serving {name} v{version} (alias {alias}) on http://{host}:{port}/invocations; "
            f"image root for `path` inputs: {root} (set {IMAGE_ROOT_ENV} to change it); ready when GET /ping answers")


def _score_parser(sub) -> None:
    sc = sub.add_parser("score", help="score a folder, archive or CSV of images with a registered model")
    sc.add_argument("source", help="folder (any files; <class>/<image> keeps labels), .zip/.tar(.gz), or .csv (path[,label])")
    which = sc.add_mutually_exclusive_group()
    which.add_argument("--version", default=None, help="model version number")
    which.add_argument("--alias", default="champion", help="model alias (default: champion)")
    sc.add_argument("--out", default=None, help="output folder (default: data/score)")
    sc.add_argument("--no-dvc", action="store_true", help="do not `dvc add` predictions.csv")
    sc.add_argument("--no-progress", action="store_true", help="no progress bar")


def _score(args) -> int:
    """`vistune score`: predictions.csv (+ quarantine, drift, summary), tracked by DVC."""
    from integrations import scoring
    from vistune.layout import Layout

    root = Path(args.root).resolve()
    out = Path(args.out) if args.out else Layout(root).score_dir
    try:
        result = scoring.score(args.source, load_params(args.params), root, out, alias=args.alias,
                               version=args.version, progress=not args.no_progress)
        tracked = None if args.no_dvc else scoring.track_with_dvc(out / "predictions.csv", root)
    except (VistuneError, ValueError) as exc:
        print(f"vistune score: error: {exc}", file=sys.stderr)
        return 2
    print(scoring.report(result))
    if tracked is not None:
        print(f"  tracked by DVC: git add {tracked.relative_to(root)} (and its .gitignore) to version these scores")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vistune", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("promote", help="make VERSION the champion")
    p.add_argument("version")
    p.add_argument("--reason", default="manual promotion")
    r = sub.add_parser("rollback", help="move champion back to the previous champion (or the one as of --to-time)")
    r.add_argument("--to-time", default=None, help="ISO time, UTC unless it has a zone: champion as of that time")
    a = sub.add_parser("archive", help="drop a version's aliases and tag it archived")
    a.add_argument("version")
    sub.add_parser("status", help="list versions, aliases and gate decisions")
    sub.add_parser("history", help="every alias change: when, who, from which version to which, why")
    lg = sub.add_parser("lineage", help="a version's lineage tags and the commands that rebuild it")
    lg.add_argument("version")
    lg.add_argument("--params-out", default=None, help="write the version's resolved params to this YAML file")
    c = sub.add_parser("card", help="write a version's model card (self-contained HTML) to a local file")
    c.add_argument("version")
    c.add_argument("--out", default=None, help="output file (default: model_card_v<VERSION>.html)")
    s = sub.add_parser("serve", help="serve models:/<name>@champion (or --version V) over HTTP on 127.0.0.1")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=5001)
    which = s.add_mutually_exclusive_group()
    which.add_argument("--alias", default="champion")
    which.add_argument("--version", default=None, help="serve this version, e.g. a compress variant (no alias)")
    init_cmd.add_parser(sub)
    metrics_cmd.add_parser(sub)
    labels_cmd.add_parser(sub)
    _score_parser(sub)
    args = parser.parse_args(argv)
    if args.cmd == "labels":  # no registry: label_issues.csv -> labels.csv
        return labels_cmd.main(args)
    if args.cmd == "init":  # no registry: it only reads the data and writes params.yaml
        return init_cmd.main(args, args.params)
    if args.cmd == "metrics":  # no registry: the workspace's metrics files
        return metrics_cmd.main(args)
    if args.cmd == "score":
        return _score(args)

    try:
        from integrations import registry, tracking

        cfg = load_params(args.params).register
        root = Path(args.root).resolve()
        client, lock = tracking.open_registry(cfg, root)
        name = cfg.model_name
        if args.cmd == "promote":
            prev = registry.promote(client, name, args.version, lock, reason=args.reason)
            print(f"{name}: champion v{prev or '-'} -> v{args.version}")
        elif args.cmd == "rollback":
            frm, to = registry.rollback(client, name, lock, to_time=args.to_time)
            print(f"{name}: champion rolled back v{frm} -> v{to}")
        elif args.cmd == "history":
            from integrations import history

            print(history.table(history.read(client, name), history.check(client, name)))
        elif args.cmd == "card":
            from integrations import card

            out = card.fetch(client, name, args.version, Path(args.out or f"model_card_v{args.version}.html"))
            print(f"{name} v{args.version}: model card written to {out}")
        elif args.cmd == "lineage":
            _lineage(client, name, args.version, args.params_out)
        elif args.cmd == "archive":
            registry.archive(client, name, args.version, lock)
            print(f"{name}: v{args.version} archived")
        elif args.cmd == "status":
            _status(client, name)
        elif args.cmd == "serve":
            env = dict(os.environ, MLFLOW_TRACKING_URI=tracking.resolve_tracking_uri(cfg, root))
            env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
            if args.version:  # e.g. a compress variant, which has no alias; unknown version: one line
                version = str(client.get_model_version(name, args.version).version)
                uri, alias = f"models:/{name}/{args.version}", "none"
            else:
                version = str(client.get_model_version_by_alias(name, args.alias).version)  # unknown alias: one line
                uri, alias = f"models:/{name}@{args.alias}", args.alias
            cmd = serve_command(uri, args.host, args.port)
            print(serving_banner(name, version, alias, args.host, args.port, env), flush=True)
            os.execvpe(cmd[0], cmd, env)
    except (VistuneError, ValueError) as exc:
        print(f"vistune {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # MLflow raises MlflowException for unknown versions/models
        if exc.__class__.__name__ == "MlflowException":
            print(f"vistune {args.cmd}: error: {exc}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
