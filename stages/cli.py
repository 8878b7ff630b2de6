"""The shared shape of every stage CLI: parse `--params`/`--root`, run at the params' CPU kernel level and
thread count, print a banner, turn user mistakes into one line on stderr and exit code 2 (no traceback)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from vistune import runtime
from vistune.config import Params, RuntimeCfg, load_params
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


DEFAULT_PARAMS = "params.yaml"


def _params_arg(argv: Sequence[str]) -> str:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--params", default=DEFAULT_PARAMS)
    try:
        return parser.parse_known_args(argv)[0].params
    except SystemExit:  # a malformed command line: stage_main's own parser reports it
        return DEFAULT_PARAMS


def pin_kernels_from_argv(argv: Sequence[str]) -> None:
    """Cap the CPU kernels at `runtime.cpu_kernels` of the params file this stage will read.

    Called when `stages` is first imported, before any stage module imports torch; a params file
    that does not parse is left to `stage_main`, which reports it in one line."""
    try:
        runtime.pin_cpu_kernels(load_params(_params_arg(argv)).runtime.cpu_kernels)
    except VistuneError:
        pass


def apply_runtime(cfg: RuntimeCfg) -> str:
    """Set torch's thread count; one line saying which kernels and threads this stage computes with."""
    import torch

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    line = f"cpu: {runtime.active_cpu_kernels()} kernels, {torch.get_num_threads()} threads"
    if not runtime.pin_holds(cfg.cpu_kernels):
        line += (
            f" (runtime.cpu_kernels={cfg.cpu_kernels} not applied: torch was imported before the stage; "
            f"run it as `python -m stages.<name>`)"
        )
    return line


def stage_main(name: str, argv: Sequence[str] | None, body: Callable[[Params, Layout], object]) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m stages.{name}", description=f"vistune stage `{name}`")
    parser.add_argument("--params", default=DEFAULT_PARAMS, help=f"params file (default: {DEFAULT_PARAMS})")
    parser.add_argument("--root", default=".", help="repository root holding data/ (default: .)")
    args = parser.parse_args(argv)
    banner(name)
    t0 = time.perf_counter()
    try:
        params = load_params(args.params)
        print(apply_runtime(params.runtime), flush=True)
        body(params, Layout(Path(args.root)))
    except VistuneError as exc:
        print(f"vistune {name}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except (OSError, RuntimeError) as exc:
        reason = write_failure(exc)
        if reason is None:
            raise
        where = getattr(exc, "filename", None) or f"the outputs of `{name}` under {Path(args.root).resolve() / 'data'}"
        print(
            f"vistune {name}: error: cannot write {where}: {reason}; check permissions/disk space "
            f"(previous outputs are left as they were)",
            file=sys.stderr,
            flush=True,
        )
        return 2
    print(f"--- {name} done in {time.perf_counter() - t0:.1f}s", flush=True)
    return 0
