"""Typed configuration: `params.yaml` is parsed once into frozen dataclasses, one per stage.

DVC tracks the same file (each stage lists its own section under `params:`), so a stage
depends exactly on the keys its dataclass declares. Unknown keys are an error: a typo in
`params.yaml` must not silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vistune.errors import ConfigError


@dataclass(frozen=True)
class DataCfg:
    """Where images come from and how they are split when the source has no split folders."""

    source: str = "sklearn:digits"  # "sklearn:digits" or a path to an ImageFolder directory
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    max_per_class: int = 0  # 0 keeps every image; >0 caps each class (fast demos, tests)
    seed: int = 42


@dataclass(frozen=True)
class ValidateCfg:
    """Policy for what counts as bad data and how much of it is tolerated."""

    max_bad_fraction: float = 0.05
    min_images_per_class: int = 5
    min_side: int = 8
    max_side: int = 10000
    max_pixels: int = 89_478_485  # PIL's own decompression-bomb limit
    allowed_formats: tuple[str, ...] = ("PNG", "JPEG", "BMP", "WEBP", "TIFF")


@dataclass(frozen=True)
class AugmentCfg:
    """Decode-once size and the per-batch training augmentation policy (timm option names)."""

    image_size: int = 64
    scale: tuple[float, float] = (0.7, 1.0)  # random resized crop area range
    ratio: tuple[float, float] = (0.75, 1.3333)
    hflip: float = 0.5
    rotation: float = 10.0  # degrees, uniform in [-rotation, rotation]
    salt_pepper: float = 0.02  # fraction of pixels set to black or white


@dataclass(frozen=True)
class TrainCfg:
    """Fine-tuning recipe; names follow timm's train.py where one exists."""

    model: str = "timm:tf_efficientnet_lite0"
    pretrained: str = "imagenet"  # "imagenet", "none", or a path to a state-dict file
    strategy: str = "full"  # see vistune.finetune.list_strategies()
    epochs: int = 5
    batch_size: int = 64
    lr: float = 2e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    smoothing: float = 0.1
    patience: int = 3  # epochs without val improvement before stopping; 0 disables
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1"
    seed: int = 42


@dataclass(frozen=True)
class EvaluateCfg:
    batch_size: int = 256


@dataclass(frozen=True)
class RegisterCfg:
    """Where the MLflow store lives and the promotion rule for the `champion` alias."""

    model_name: str = "vistune-classifier"
    experiment: str = "vistune"
    tracking_uri: str = "sqlite:///mlflow/mlflow.db"
    artifact_root: str = "mlflow/artifacts"
    gate_metric: str = "test_macro_f1"
    min_improvement: float = 0.0


@dataclass(frozen=True)
class Params:
    data: DataCfg = field(default_factory=DataCfg)
    validate: ValidateCfg = field(default_factory=ValidateCfg)
    augment: AugmentCfg = field(default_factory=AugmentCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    evaluate: EvaluateCfg = field(default_factory=EvaluateCfg)
    register: RegisterCfg = field(default_factory=RegisterCfg)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert a YAML value to the dataclass field's type, or raise a ConfigError naming the key."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"params.yaml: {where} must be a list, got {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if len(args) != len(value):
            raise ConfigError(f"params.yaml: {where} must have {len(args)} items, got {value!r}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    if origin in (typing.Union, types.UnionType):
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"params.yaml: {where} must be true or false, got {value!r}")
        return value
    if hint in (int, float, str):
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, hint) or isinstance(value, bool):
            raise ConfigError(f"params.yaml: {where} must be {hint.__name__}, got {value!r}")
    return value


def _build(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"params.yaml: section {where!r} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(
            f"params.yaml: unknown key(s) {unknown} in {where or 'top level'}; valid keys: {names}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in raw.items()}
    return cls(**kwargs)


def parse_params(raw: dict[str, Any]) -> Params:
    """Build `Params` from an already-loaded mapping (used by tests and flows)."""
    return _build(Params, raw, "")


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found; run from the repository root or pass --params")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__}); fix the syntax") from exc
    return parse_params(raw)


def to_dict(params: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) for JSON, MLflow params and checkpoints."""
    def conv(v: Any) -> Any:
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v
    return conv(dataclasses.asdict(params))
