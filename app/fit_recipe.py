"""Fit params.yaml to a data source and this device: inspect the source where it lies, derive the recipe
(`vistune.recipe`), write only the values that change (`integrations.params_file`, comments kept) and
print each change with its reason. `vistune init` and a Prefect run that sets only `data_source` both
come here.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml

from vistune.config import Params, load_params, parse_params
from vistune.errors import ConfigError

NEXT_STEP = "next: `dvc repro` (or `python -m flows.pipeline`) trains, evaluates and registers with this recipe"


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


def _device(params: Params):
    import torch

    from vistune.recipe import DeviceFacts

    spec = params.train.device
    cuda = torch.cuda.is_available() if spec == "auto" else spec.startswith("cuda")
    if cuda:
        return DeviceFacts("cuda", torch.cuda.get_device_name(0), torch.get_num_threads())
    threads = params.runtime.threads or torch.get_num_threads()  # what the stages will run on
    return DeviceFacts("cpu", f"this CPU ({threads} threads)", threads)


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


def write_recipe(
    source: str,
    params_path: Path,
    minutes: float | None = None,
    pins: dict[str, Any] | None = None,
    dry_run: bool = False,
    say=print,
) -> list:
    """Inspect `source`, fit the recipe to it and this device, write it into `params_path` (unless `dry_run`);
    returns the changes."""
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
    say(
        f"\nrecipe for {params_path} ({device.kind}: {device.name}"
        + (
            f", estimated {recipe.estimated_minutes:.1f} min for the whole pipeline)"
            if recipe.estimated_minutes is not None
            else ")"
        )
    )
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
