"""Typed run parameters for the Prefect UI form, and how they land in params.yaml.

Each field maps to one `params.yaml` key; `None` keeps the committed value. Applying them
edits params.yaml in place (comments kept), exactly what `dvc exp run --set-param` does, so
the run is recorded by DVC like any experiment.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Optional

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


def _field(ui_name: str, description: str) -> Any:
    """An optional form field with the bounds `vistune.config` checks for its params.yaml key."""
    return Field(None, description=description, **limits(PARAM_KEYS[ui_name]))


class PipelineParams(BaseModel):
    """What a user may change for one run; empty fields keep the value in params.yaml.

    Limits and allowed values come from `vistune.config`, so the form accepts what params.yaml does.
    """

    data_source: Optional[str] = _field("data_source", "sklearn:digits or a path to an ImageFolder directory")
    model: Optional[str] = _field("model", "backbone, e.g. timm:tf_efficientnet_lite0 or torchvision:resnet18")
    strategy: Optional[StrategyName] = _field("strategy", "fine-tuning strategy (vistune.train.finetune)")
    epochs: Optional[int] = _field("epochs", "training epochs")
    lr: Optional[float] = _field("lr", "peak learning rate (after warmup)")
    batch_size: Optional[int] = _field("batch_size", "training batch size")
    image_size: Optional[int] = _field("image_size", "decode-once image size in pixels")
    hflip: Optional[float] = _field("hflip", "horizontal flip probability")
    rotation: Optional[float] = _field("rotation", "max rotation in degrees")
    salt_pepper: Optional[float] = _field("salt_pepper", "salt-and-pepper noise fraction")
    min_improvement: Optional[float] = _field("min_improvement", "gate margin over the champion")

    def overrides(self) -> dict[str, Any]:
        """params.yaml key -> value for every field the user set."""
        return {PARAM_KEYS[k]: v for k, v in self.model_dump().items() if v is not None}

    def set_param_args(self) -> list[str]:
        """The same overrides as `dvc exp run --set-param` arguments (for logs and docs)."""
        return [f"{k}={v}" for k, v in self.overrides().items()]


def apply_overrides(params_file: Path, overrides: dict[str, Any]) -> None:
    """Write dotted-key overrides into params.yaml, keeping comments; validates the result."""
    import yaml as pyyaml
    from ruamel.yaml import YAML

    from vistune.config import parse_params
    from vistune.io import atomic_path

    if not overrides:
        return
    yaml = YAML()
    yaml.preserve_quotes = True
    doc = yaml.load(params_file.read_text())
    for dotted, value in overrides.items():
        section, key = dotted.split(".", 1)
        doc[section][key] = value
    buf = io.StringIO()
    yaml.dump(doc, buf)
    parse_params(pyyaml.safe_load(buf.getvalue()))  # reject bad values before touching the file
    with atomic_path(params_file) as tmp:
        tmp.write_text(buf.getvalue())
