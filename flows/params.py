"""Typed run parameters for the Prefect UI form, and how they land in params.yaml.

Each field maps to one `params.yaml` key; `None` keeps the committed value. Applying them
edits params.yaml in place (comments kept), exactly what `dvc exp run --set-param` does, so
the run is recorded by DVC like any experiment.

The served deployments pre-fill the form with params.yaml as it is when they are deployed
(`prefill_schema`: plain typed inputs, bounds, dropdowns for strategy and backbone). A field left at
that value is not an override: the run uses the workspace's params.yaml for it, even if the file
changed since (`PipelineParams.overrides`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from vistune.config import StrategyName, limits

# UI field -> params.yaml key
PARAM_KEYS = {
    "data_source": "data.source",
    "model": "train.model",
    "strategy": "train.strategy",
    "epochs": "train.epochs",
    "lr": "train.lr",
    "batch_size": "train.batch_size",
    "image_size": "augment.image_size",
    "hflip": "augment.hflip",
    "rotation": "augment.rotation",
    "salt_pepper": "augment.salt_pepper",
    "min_improvement": "register.min_improvement",
}


def bounds_text(bounds: dict[str, float]) -> str:
    """`{'ge': 1, 'le': 1000}` -> "1 ≤ value ≤ 1000": the form's limits in words (the UI shows none)."""
    low = {"ge": "≤", "gt": "<"}
    high = {"le": "≤", "lt": "<"}
    left = "".join(f"{bounds[k]:g} {op} " for k, op in low.items() if k in bounds)
    right = "".join(f" {op} {bounds[k]:g}" for k, op in high.items() if k in bounds)
    return f"{left}value{right}" if bounds else ""


def ui_text(text: str) -> str:
    """`<name>` -> `‹name›`: the Prefect UI renders descriptions as HTML, where `<Dataset>` vanishes."""
    return re.sub(r"<([^<>]*)>", "\u2039\\1\u203a", text)


def _field(ui_name: str, description: str, title: str) -> Any:
    """An optional form field with the bounds `vistune.config` checks for its params.yaml key, stated
    in its description too."""
    bounds = limits(PARAM_KEYS[ui_name])
    said = f"; {bounds_text(bounds)}" if bounds else ""
    return Field(None, title=title, description=ui_text(f"{description} (`{PARAM_KEYS[ui_name]}`{said})"), **bounds)


class PipelineParams(BaseModel):
    """What a user may change for one run; empty fields keep the value in params.yaml.

    Limits and allowed values come from `vistune.config`, so the form accepts what params.yaml does.
    """

    data_source: str | None = _field(
        "data_source",
        "sklearn:digits, torchvision:<Dataset>, a CSV manifest, an archive or an ImageFolder path",
        "Data source",
    )
    model: str | None = _field(
        "model",
        "backbone; the list holds those with offline ImageNet weights, any "
        "timm:<name> / torchvision:<name> goes into params.yaml",
        "Backbone",
    )
    strategy: StrategyName | None = _field(
        "strategy",
        "what trains: head only (linear_probe), the last blocks "
        "(partial), everything (full), LoRA adapters, biases (bitfit)",
        "Fine-tuning strategy",
    )
    epochs: int | None = _field("epochs", "training epochs", "Epochs")
    lr: float | None = _field("lr", "peak learning rate (after warmup)", "Learning rate")
    batch_size: int | None = _field("batch_size", "training batch size", "Batch size")
    image_size: int | None = _field("image_size", "images are decoded once at this size (pixels)", "Image size")
    hflip: float | None = _field("hflip", "probability of a horizontal flip", "Horizontal flip")
    rotation: float | None = _field("rotation", "largest random rotation in degrees", "Rotation")
    salt_pepper: float | None = _field("salt_pepper", "fraction of pixels set to black or white", "Salt and pepper")
    min_improvement: float | None = _field(
        "min_improvement",
        "how much the gate metric must beat the champion by to promote (negative: accept a tie)",
        "Promotion margin",
    )

    def overrides(self, *unchanged: dict[str, Any]) -> dict[str, Any]:
        """params.yaml key -> value for every field the user set. A field equal to its value in one of
        `unchanged` (UI name -> value: the workspace's params.yaml, the form's pre-filled values) is
        not an override: the form showed it and the user left it."""
        return {
            PARAM_KEYS[k]: v
            for k, v in self.model_dump().items()
            if v is not None and not any(k in base and base[k] == v for base in unchanged)
        }

    def set_param_args(self, *unchanged: dict[str, Any]) -> list[str]:
        """The same overrides as `dvc exp run --set-param` arguments (for logs and docs)."""
        return [f"{k}={v}" for k, v in self.overrides(*unchanged).items()]


def form_values(params_file: Path) -> dict[str, Any]:
    """UI field -> its value in `params_file` (what the form shows pre-filled)."""
    import yaml

    doc = yaml.safe_load(params_file.read_text()) or {}
    values = {}
    for ui_name, dotted in PARAM_KEYS.items():
        section, key = dotted.split(".", 1)
        if key in (doc.get(section) or {}):
            values[ui_name] = doc[section][key]
    return values


def backbone_choices(current: str | None) -> list[str]:
    """The form's backbone dropdown: every concrete `list_backbones()` entry (offline weights) plus
    the current value; other timm/torchvision names are set in params.yaml or with `--param`."""
    from vistune.models.backbones import list_backbones

    names = [b for b in list_backbones() if "<" not in b]
    return names + [current] if current and current not in names else names


def prefill_schema(schema: dict, values: dict[str, Any], backbones: list[str]) -> dict:
    """The deployment's parameter schema with the `PipelineParams` form pre-filled: each field a plain
    typed input (the nullable `anyOf` makes the Prefect UI show a "None" type picker), its default
    `values[field]`, `model` a dropdown of `backbones`. Fields without a value stay nullable."""
    schema = json.loads(json.dumps(schema))
    props = schema.get("definitions", {}).get("PipelineParams", {}).get("properties", {})
    for name, prop in props.items():
        if name not in values:
            continue
        typed = [s for s in prop.pop("anyOf", []) if s.get("type") != "null"]
        if len(typed) == 1:
            prop.update(typed[0])
        prop["default"] = values[name]
    if "model" in props and backbones:
        props["model"].update(type="string", enum=backbones)
    if "params" in schema.get("properties", {}):
        schema["properties"]["params"]["default"] = dict(values)
    return schema


def apply_overrides(params_file: Path, overrides: dict[str, Any]) -> None:
    """Write dotted-key overrides into params.yaml, keeping comments; validates the result first.
    The one params.yaml writer (`integrations.params_file`) does the edit, YAML-1.1-safe floats included."""
    import yaml as pyyaml

    from integrations.params_file import apply_settings
    from vistune.config import parse_params
    from vistune.io import write_text

    if not overrides:
        return
    text = apply_settings(params_file.read_text(), overrides.items(), str(params_file))
    parse_params(pyyaml.safe_load(text))  # reject bad values before touching the file
    write_text(params_file, text)
