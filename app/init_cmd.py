"""`vistune init SOURCE`: inspect a data source where it lies, then write a params.yaml recipe fitted to
it and to this device, printing each change with its reason (comments and layout of the file kept).

The inspection and the rules are core code (`vistune.data.inspect`, `vistune.recipe`); the file is
written by `app.fit_recipe`; this module parses the command line and reports a mistake in one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.fit_recipe import write_recipe
from vistune.config import Params, to_dict
from vistune.errors import ConfigError, VistuneError


def add_parser(sub) -> None:
    p = sub.add_parser("init", help="inspect a data source and write a params.yaml recipe fitted to it")
    p.add_argument("source", help="ImageFolder dir, archive, .csv manifest, sklearn:digits or torchvision:<Dataset>")
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="time budget for the whole pipeline on this machine (CPU default 10)",
    )
    p.add_argument("--params", dest="init_params", default=None, help="params file to update (default: params.yaml)")
    p.add_argument("--dry-run", action="store_true", help="print the report and the changes; write nothing")
    p.add_argument(
        "--set",
        dest="pins",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="pin a value the recipe would otherwise choose (e.g. augment.salt_pepper=0.02); repeatable",
    )


def _pins(pairs: list[str]) -> dict[str, Any]:
    from integrations.params_file import parse_value

    valid = {f"{section}.{key}" for section, keys in to_dict(Params()).items() for key in keys}
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key.strip() not in valid:
            raise ConfigError(
                f"--set {pair!r}: expected SECTION.KEY=VALUE with a params.yaml key, e.g. augment.salt_pepper=0.02"
            )
        out[key.strip()] = parse_value(value)
    return out


def init(args: argparse.Namespace, params_default: str) -> int:
    write_recipe(args.source, Path(args.init_params or params_default), args.minutes, _pins(args.pins), args.dry_run)
    return 0


def main(args: argparse.Namespace, params_default: str) -> int:
    """Run `init`; a user's mistake is one line on stderr and exit code 2."""
    try:
        return init(args, params_default)
    except VistuneError as exc:
        print(f"vistune init: error: {exc}", file=sys.stderr)
        return 2
