"""`vistune serve`: the champion (or one pinned version) on 127.0.0.1, following the alias as it moves (app.serving)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_parser(sub) -> None:
    s = sub.add_parser("serve", help="serve models:/<name>@champion (or --version V) over HTTP on 127.0.0.1")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=5001)
    which = s.add_mutually_exclusive_group()
    which.add_argument("--alias", default="champion")
    which.add_argument("--version", default=None, help="serve this version, e.g. a compress variant (no alias)")
    s.add_argument("--poll-s", type=float, default=5.0, help="how often to check where the alias points")
    s.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="refuse larger images (HTTP 400, from the header); default: validate.max_pixels of the model",
    )


def serving_banner(name: str, version: str, alias: str, host: str, port: int, env: dict) -> str:
    """The startup line: what is served (model, version, alias), where, and where `path` inputs may point."""
    from integrations.pyfunc_model import IMAGE_ROOT_ENV

    root = Path(env.get(IMAGE_ROOT_ENV) or os.getcwd()).resolve()
    return (
        f"serving {name} v{version} (alias {alias}) on http://{host}:{port}/invocations; "
        f"image root for `path` inputs: {root} (set {IMAGE_ROOT_ENV} to change it); ready when GET /ping answers"
    )


def run(args: argparse.Namespace, client, cfg, root: Path) -> int:
    """Serve in this process until stopped; an unknown model or version fails in one line."""
    import mlflow

    from app.serving import server, watcher
    from integrations import tracking

    mlflow.set_tracking_uri(uri := tracking.resolve_tracking_uri(cfg, root))
    mlflow.set_registry_uri(uri)
    if args.max_pixels:  # read by the pyfunc when each version loads (the lower of it and the model's own)
        from integrations.pyfunc_model import MAX_PIXELS_ENV

        os.environ[MAX_PIXELS_ENV] = str(args.max_pixels)
    w = watcher.AliasWatcher(
        client, cfg.model_name, alias=None if args.version else args.alias, version=args.version, interval_s=args.poll_s
    )
    print(
        serving_banner(
            cfg.model_name, w.target(), "none" if args.version else args.alias, args.host, args.port, os.environ
        ),
        flush=True,
    )
    return server.run(w, args.host, args.port)
