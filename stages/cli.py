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


def write_failure(exc: BaseException) -> str | None:
    """Why an output could not be written (permissions, full disk, a file where a folder should be),
    or None when `exc` is not a write failure. numpy reports a short write as a bare OSError and
    torch.save as a RuntimeError from its zip writer; both mean the disk refused the bytes."""
    if isinstance(exc, FileNotFoundError):
        return None  # a missing input, not a write failure
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    text = str(exc)
    if "inline_container" in text or "PytorchStreamWriter" in text or "file write failed" in text:
        return f"torch could not write the file ({text.splitlines()[0][:120]})"
    return None


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
    except (OSError, RuntimeError) as exc:
        reason = write_failure(exc)
        if reason is None:
            raise
        where = getattr(exc, "filename", None) or f"the outputs of `{name}` under {Path(args.root).resolve() / 'data'}"
        print(f"vistune {name}: error: cannot write {where}: {reason}; check permissions/disk space "
              f"(previous outputs are left as they were)", file=sys.stderr, flush=True)
        return 2
    print(f"--- {name} done in {time.perf_counter() - t0:.1f}s", flush=True)
    return 0
