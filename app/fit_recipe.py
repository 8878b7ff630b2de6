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


DECISIONS = ("train.model", "train.strategy", "augment.image_size")  # printed with their reason even when unchanged
MEASURE_BACKBONE = "timm:tf_efficientnet_lite0"  # the cheapest offline backbone: the probe check's features


def _measure(profile, current: Params, params_path: Path, say):
    """The frozen-probe checks on the source's train split (colour images with ImageNet weights only; None
    otherwise, e.g. grayscale digits): Lite0 at each candidate size, then, where the head alone is trained,
    every offline backbone at its own size; features cached per backbone and size under .run/."""
    from vistune.data.features import FeatureSpec
    from vistune.models.backbones import list_backbones
    from vistune.recipe import CPU_COSTS, backbones_to_score, check_sizes
    from vistune.recipe_check import measure, sample_source, score_backbones

    if not profile.is_colour or current.train.pretrained != "imagenet":
        return None
    cache = params_path.resolve().parent / ".run" / "init_features"
    cache.mkdir(parents=True, exist_ok=True)
    sample = sample_source(dataclasses.replace(current.data, source=profile.source), current.validate)
    spec = FeatureSpec(MEASURE_BACKBONE, "imagenet", "", 0)
    measured = measure(sample, spec, check_sizes(profile, CPU_COSTS[0].native), cache)
    wanted = backbones_to_score(profile, list_backbones(), measured)
    if wanted:
        measured = score_backbones(measured, sample, wanted, cache)
    say("\n" + "\n".join(measured.describe()))
    return measured


def _share_features(measured, params_path: Path, model: str, size: int) -> None:
    """Validate embeds train+val with the chosen backbone at the chosen size: hand it the sample's rows
    where the checks embedded that backbone at that size."""
    import shutil

    from vistune.layout import Layout
    from vistune.recipe_check import cache_file

    root = params_path.resolve().parent
    found = cache_file(root / ".run" / "init_features", model, size)
    if measured is not None and found.is_file():
        target = Layout(root).feature_cache
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found, target)


def _written_estimate(written: Params, profile, device, recipe_minutes: float | None) -> float | None:
    """The cost model of the params as written, pins (`--set`) included: a pinned backbone, size, epochs or
    strategy is what will run. None where the recipe has no estimate (a GPU) or the backbone has no measured cost."""
    from vistune.recipe import CPU_COSTS, estimate_seconds

    cost = next((c for c in CPU_COSTS if c.spec == written.train.model), None)
    if recipe_minutes is None or cost is None:
        return None
    probe = written.train.strategy == "linear_probe"
    size, epochs = written.augment.image_size, written.train.epochs
    return estimate_seconds(cost, size, epochs, profile, device.threads, probe) / 60


# a CPU this much slower than the cost model's quiet figures is called busy in a note. The estimate itself stays the
# quiet one: on the bench (RESULTS.md, recipe on four photo sets) the speed at `init` time did not predict the
# run's (cub: 2.74x slower at init, the run took 0.91x the quiet estimate)
BUSY = 1.5


def _load_factor(device, say) -> float:
    """How much slower than the cost model's quiet figures this CPU runs now (1.0 on a GPU)."""
    from vistune.recipe import CPU_COSTS, MEASURED_THREADS
    from vistune.recipe_check import forward_images_per_s

    if device.kind != "cpu":
        return 1.0
    cost = CPU_COSTS[0]
    now = forward_images_per_s(cost.spec, cost.native) * MEASURED_THREADS / max(device.threads, 1)
    factor = max(1.0, cost.eval_img_s / now)
    say(f"this CPU now: {now:.0f} img/s forward at {cost.native} px, {factor:.2f}x the measured quiet time")
    return factor


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
    measured = _measure(profile, current, params_path, say)
    factor = _load_factor(device, say)
    recipe = make_recipe(
        profile, device, list_backbones(), _source_value(source, params_path), current, minutes, measured
    )
    changes = diff(recipe, current, pins or {})
    new_text = apply_settings(params_path.read_text(), [(c.key, c.new) for c in changes], str(params_path))
    est = _written_estimate(_check_written(new_text, changes, params_path), profile, device, recipe.estimated_minutes)
    say(
        f"\nrecipe for {params_path} ({device.kind}: {device.name}"
        + (f", estimated {est:.1f} min for the whole pipeline)" if est is not None else ")")
    )
    if est is not None and factor > BUSY:
        say(
            f"  note: the estimate is for this CPU when quiet; it runs {factor:.2f}x slower now "
            f"(~{est * factor:.0f} min if that lasts)"
        )
    for note in recipe.notes:
        say(f"  note: {note}")
    changed = {c.key for c in changes}
    for setting in recipe.settings:
        if setting.key in DECISIONS and setting.key not in changed:
            say(f"  {setting.key}: {_show(setting.value)} kept  ({setting.reason})")
    if not changes:
        say(f"  no changes: {params_path} already holds this recipe")
        return []
    for c in changes:
        say(f"  {c.key}: {_show(c.old)} -> {_show(c.new)}  ({c.reason})")
    if dry_run:
        say(f"dry run: {params_path} not written")
        return changes
    write_text(params_path, new_text)
    chosen = {s.key: s.value for s in recipe.settings}
    _share_features(measured, params_path, chosen["train.model"], chosen["augment.image_size"])
    say(f"wrote {len(changes)} change(s) to {params_path}; {NEXT_STEP}")
    return changes
