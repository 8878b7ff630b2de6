"""`vistune init SOURCE`: inspect a data source where it lies, then write a params.yaml recipe fitted to
it and to this device, printing each change with its reason (comments and layout of the file kept).

The inspection and the rules are core code (`vistune.data.inspect`, `vistune.recipe`); this module
only gathers the device facts, applies the settings to the file and prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from vistune.config import Params, load_params, parse_params, to_dict
from vistune.errors import ConfigError, VistuneError

NEXT_STEP = "next: `dvc repro` (or `python -m flows.pipeline`) trains, evaluates and registers with this recipe"


def add_parser(sub) -> None:
    p = sub.add_parser("init", help="inspect a data source and write a params.yaml recipe fitted to it")
    p.add_argument("source", help="ImageFolder dir, archive, .csv manifest, sklearn:digits or torchvision:<Dataset>")
    p.add_argument("--minutes", type=float, default=None,
                   help="time budget for the whole pipeline on this machine (CPU default 10)")
    p.add_argument("--params", dest="init_params", default=None, help="params file to update (default: params.yaml)")
    p.add_argument("--dry-run", action="store_true", help="print the report and the changes; write nothing")
    p.add_argument("--set", dest="pins", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="pin a value the recipe would otherwise choose (e.g. augment.salt_pepper=0.02); repeatable")


def _source_value(source: str, params_path: Path) -> str:
    """The source as params.yaml should spell it: paths relative to the params file's folder (where
    DVC runs the stages), other sources as given."""
    path = Path(source).expanduser()
    if ":" in source and not path.exists():
        return source
    base = params_path.resolve().parent
    target = path.resolve()
    rel = os.path.relpath(target, base)
    return rel if Path(os.path.commonpath([target, base])) != Path(target.anchor) else str(target)


def _pins(pairs: list[str]) -> dict[str, Any]:
    from integrations.params_file import parse_value

    valid = {f"{section}.{key}" for section, keys in to_dict(Params()).items() for key in keys}
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key.strip() not in valid:
            raise ConfigError(f"--set {pair!r}: expected SECTION.KEY=VALUE with a params.yaml key, e.g. "
                              "augment.salt_pepper=0.02")
        out[key.strip()] = parse_value(value)
    return out


def _device(params: Params):
    import torch

    from vistune.recipe import DeviceFacts

    spec = params.train.device
    cuda = torch.cuda.is_available() if spec == "auto" else spec.startswith("cuda")
    if cuda:
        return DeviceFacts("cuda", torch.cuda.get_device_name(0), torch.get_num_threads())
    return DeviceFacts("cpu", f"this CPU ({torch.get_num_threads()} threads)", torch.get_num_threads())


def _show(value: Any) -> str:
    return "[" + ", ".join(_show(v) for v in value) + "]" if isinstance(value, (list, tuple)) else str(value)


def _check_written(text: str, changes, where: Path) -> Params:
    """The new file parses with load_params' rules and holds exactly the printed values."""
    from vistune.recipe import _current

    parsed = parse_params(yaml.safe_load(text) or {})
    for c in changes:
        got = _current(parsed, c.key)
        if got != c.new:
            raise ConfigError(f"{where}: {c.key} would read back as {got!r}, not {c.new!r}; edit it by hand")
    return parsed


def write_recipe(source: str, params_path: Path, minutes: float | None = None, pins: dict[str, Any] | None = None,
                 dry_run: bool = False, say=print) -> list:
    """Inspect `source`, fit the recipe to it and this device, write it into `params_path` (unless `dry_run`);
    returns the changes. `vistune init` and a Prefect run that sets only `data_source` both come here."""
    from integrations.params_file import apply_settings
    from vistune.data.inspect import describe, inspect_source
    from vistune.io import write_text
    from vistune.models.backbones import list_backbones
    from vistune.recipe import diff, make_recipe

    current = load_params(params_path)
    if minutes is not None and minutes <= 0:
        raise ConfigError(f"--minutes {minutes:g}: give a positive number of minutes")
    profile = inspect_source(dataclasses.replace(current.data, source=source), current.validate)
    say("\n".join(describe(profile)))
    device = _device(current)
    recipe = make_recipe(profile, device, list_backbones(), _source_value(source, params_path), current, minutes)
    changes = diff(recipe, current, pins or {})
    new_text = apply_settings(params_path.read_text(), [(c.key, c.new) for c in changes], str(params_path))
    _check_written(new_text, changes, params_path)
    say(f"\nrecipe for {params_path} ({device.kind}: {device.name}"
        + (f", estimated {recipe.estimated_minutes:.1f} min for the whole pipeline)" if recipe.estimated_minutes
           is not None else ")"))
    for note in recipe.notes:
        say(f"  note: {note}")
    if not changes:
        say(f"  no changes: {params_path} already holds this recipe")
        return []
    for c in changes:
        say(f"  {c.key}: {_show(c.old)} -> {_show(c.new)}  ({c.reason})")
    if dry_run:
        say(f"dry run: {params_path} not written")
        return changes
    write_text(params_path, new_text)
    say(f"wrote {len(changes)} change(s) to {params_path}; {NEXT_STEP}")
    return changes


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
