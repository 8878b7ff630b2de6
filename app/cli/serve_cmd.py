"""`vistune serve`: the champion (or one version) behind `mlflow models serve` on 127.0.0.1."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_parser(sub) -> None:
    s = sub.add_parser("serve", help="serve models:/<name>@champion (or --version V) over HTTP on 127.0.0.1")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=5001)
    which = s.add_mutually_exclusive_group()
    which.add_argument("--alias", default="champion")
    which.add_argument("--version", default=None, help="serve this version, e.g. a compress variant (no alias)")


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


def run(args: argparse.Namespace, client, cfg, root: Path) -> None:
    """Resolve the version (an unknown one fails in one line) and exec the MLflow server in this process."""
    from integrations import tracking

    name = cfg.model_name
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking.resolve_tracking_uri(cfg, root))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    if args.version:  # e.g. a compress variant, which has no alias
        version = str(client.get_model_version(name, args.version).version)
        uri, alias = f"models:/{name}/{args.version}", "none"
    else:
        version = str(client.get_model_version_by_alias(name, args.alias).version)
        uri, alias = f"models:/{name}@{args.alias}", args.alias
    cmd = serve_command(uri, args.host, args.port)
    print(serving_banner(name, version, alias, args.host, args.port, env), flush=True)
    os.execvpe(cmd[0], cmd, env)
