"""The shared shape of every stage CLI: parse `--params`/`--root`, print a banner, turn user
mistakes into one line on stderr and exit code 2 (no traceback)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from vistune.config import Params, load_params
from vistune.errors import VistuneError
from vistune.layout import Layout


def banner(text: str) -> None:
    print(f"\n=== vistune · {text} ===", flush=True)


def stage_main(name: str, argv: Sequence[str] | None, body: Callable[[Params, Layout], object]) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m stages.{name}", description=f"vistune stage `{name}`")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--root", default=".", help="repository root holding data/ (default: .)")
    args = parser.parse_args(argv)
    banner(name)
    t0 = time.perf_counter()
    try:
        params = load_params(args.params)
        body(params, Layout(Path(args.root)))
    except VistuneError as exc:
        print(f"vistune {name}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    print(f"--- {name} done in {time.perf_counter() - t0:.1f}s", flush=True)
    return 0
