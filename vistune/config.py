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

    source: str = "sklearn:digits"  # sklearn:digits, torchvision:<Dataset>, ImageFolder dir, archive or .csv
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    max_per_class: int = 0  # 0 keeps every image; >0 caps each class (fast demos, tests)
    cache_dir: str = ""  # torchvision:<Dataset> root; "" = ~/.cache/vistune/torchvision
    download: bool = True  # torchvision:<Dataset>: download when not already in cache_dir
    seed: int = 42


@dataclass(frozen=True)
class ValidateCfg:
    """Policy for what counts as bad data and how much of it is tolerated."""

    max_bad_fraction: float = 0.05
    min_images_per_class: int = 5
    min_side: int = 8
    max_side: int = 10000
    max_pixels: int = 89_478_485  # PIL's own decompression-bomb limit; checked from the header
    decode_timeout_s: float = 10.0  # wall-clock limit on decoding one image (0 = none)
    allowed_formats: tuple[str, ...] = ("PNG", "JPEG", "BMP", "WEBP", "TIFF")
    # PIL modes accepted (each is normalized to RGB by vistune.data.imageio.to_rgb); drop one to flag it
    allowed_modes: tuple[str, ...] = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr",
                                      "I", "I;16", "I;16B", "I;16L")
    min_aspect: float = 0.1  # width / height
    max_aspect: float = 10.0
    on_duplicate: str = "quarantine"  # within a split: "quarantine" extra copies, "warn", or "fail"
    near_duplicate_distance: int = 4  # pHash Hamming distance (of 64 bits); -1 disables
    near_duplicate_min_side: int = 32  # smaller images are too small for a perceptual hash
    max_leaked: int = 0  # images in two splits (always quarantined from val/test); fail above this
    max_imbalance_ratio: float = 10.0  # warn when largest/smallest train class exceeds it
    workers: int = 8  # decode threads


@dataclass(frozen=True)
class AugmentCfg:
    """Decode-once size and the per-batch training augmentation policy (timm option names).

    Every op is off at 0; see vistune.train.augment.list_augments() for the op names.
    """

    image_size: int = 64
    scale: tuple[float, float] = (0.7, 1.0)  # random resized crop area range ((1, 1) = off)
    ratio: tuple[float, float] = (0.75, 1.3333)
    hflip: float = 0.5
    rotation: float = 10.0  # degrees, uniform in [-rotation, rotation]
    shear: float = 0.0  # degrees, x and y shear uniform in [-shear, shear]
    brightness: float = 0.0  # color jitter: factor uniform in [1 - b, 1 + b]
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0  # fraction of a full turn, uniform in [-hue, hue] (<= 0.5)
    gaussian_noise: float = 0.0  # std of additive noise on [0, 1] pixels
    salt_pepper: float = 0.02  # fraction of pixels set to black or white
    auto_augment: str = "none"  # "none", "trivial" (TrivialAugment) or "rand" (RandAugment)
    aa_num_ops: int = 2  # RandAugment ops per image
    aa_magnitude: float = 0.5  # RandAugment magnitude as a fraction of each op's maximum
    reprob: float = 0.0  # random erasing probability per image
    mixup: float = 0.0  # mixup alpha (0 = off)
    cutmix: float = 0.0  # cutmix alpha (0 = off); with both on, each batch picks one at random


@dataclass(frozen=True)
class TrainCfg:
    """Fine-tuning recipe; names follow timm's train.py where one exists."""

    model: str = "timm:tf_efficientnet_lite0"
    pretrained: str = "imagenet"  # "imagenet", "none", or a path to a state-dict file
    pretrained_sha256: str = ""  # pretrained a file: its sha256, checked before loading (required)
    strategy: str = "full"  # see vistune.train.finetune.list_strategies()
    unfreeze_blocks: int = 2  # strategy partial: how many of the last blocks train
    layer_decay: float = 0.0  # strategy full: timm layer-wise LR decay (e.g. 0.75); 0 = off
    lora_rank: int = 8  # strategy lora
    lora_alpha: float = 16.0
    epochs: int = 5
    batch_size: int = 64
    lr: float = 2e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    smoothing: float = 0.1
    clip_grad: float = 0.0  # max global grad norm; 0 = off
    drop_rate: float = 0.0  # dropout before the classifier (timm models)
    drop_path_rate: float = 0.0  # stochastic depth (timm models)
    model_ema: bool = False  # keep an EMA of the weights; validate and keep the EMA model
    model_ema_decay: float = 0.998
    class_weighting: str = "none"  # "none", "loss" (weighted cross-entropy) or "sampler" (balanced)
    adversarial: str = "none"  # "none", "fgsm" or "pgd": adversarial fine-tuning (vistune.train.adversarial)
    adv_epsilon: float = 0.016  # L-inf radius on [0, 1] pixels, before normalization (4/255)
    adv_steps: int = 3  # pgd iterations
    adv_step_size: float = 0.0  # pgd step; 0 = 2.5 * adv_epsilon / adv_steps
    adv_fraction: float = 0.5  # share of batches trained on adversarial images (the rest clean)
    patience: int = 3  # epochs without val improvement before stopping; 0 disables
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    compile: bool = False  # torch.compile the model (CUDA; slow first epoch)
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1"
    seed: int = 42


@dataclass(frozen=True)
class EvaluateCfg:
    """What the evaluate stage measures beyond accuracy; each extra is a switch (all cheap by default)."""

    batch_size: int = 256
    ece_bins: int = 15
    temperature_scaling: bool = True  # fit T on val; stored in calibration.json and applied when serving
    tta_flip: bool = False  # also report accuracy with horizontal-flip test-time augmentation
    roc_max_classes: int = 10  # ROC/PR curves only for this many classes or fewer
    robustness: bool = True
    robust_severities: tuple[int, ...] = (1, 3, 5)  # 1..5, see vistune.evaluate.robustness
    attack_eps: tuple[float, ...] = (0.004, 0.016)  # L-inf in [0, 1] pixel units; () skips attacks
    pgd_steps: int = 5  # 0 skips PGD (FGSM still runs)
    robust_max_images: int = 256  # robustness and attacks on the first N test images
    gradcam: bool = True
    gradcam_samples: int = 8  # per row: correct and wrong predictions
    latency: bool = True
    latency_runs: int = 20
    seed: int = 0


@dataclass(frozen=True)
class RegisterCfg:
    """Where the MLflow store lives and the promotion rule for the `champion` alias."""

    model_name: str = "vistune-classifier"
    experiment: str = "vistune"
    tracking_uri: str = "sqlite:///mlflow/mlflow.db"
    artifact_root: str = "mlflow/artifacts"
    gate_metric: str = "test_macro_f1"
    min_improvement: float = 0.0
    min_accuracy: float = 0.0  # floor on test_accuracy
    max_ece: float = 1.0  # ceiling on test_ece (checked when evaluate reports it)
    min_robust_accuracy: float = 0.0  # floor on test_robust_accuracy (checked when reported)
    gate_test: str = "mcnemar"  # none | mcnemar | bootstrap: challenger vs champion re-scored on the same test split
    gate_alpha: float = 0.05  # significance level of gate_test
    gate_n_boot: int = 1000  # paired bootstrap resamples for the gate report's confidence intervals
    allow_dirty: bool = False  # false: refuse to register from a git tree with uncommitted source changes
    retries: int = 3  # tracking-server calls: extra attempts after the first, exponential backoff
    retry_backoff_s: float = 2.0  # first wait; doubles each retry


@dataclass(frozen=True)
class CompressCfg:
    """Optional smaller variants of the trained model (stage `compress`); off by default."""

    enabled: bool = False
    variants: tuple[str, ...] = ("onnx", "onnx_int8", "pruned", "distilled")
    prune_amount: float = 0.5  # fraction of conv/linear weights zeroed (global magnitude)
    finetune_epochs: int = 1  # fine-tune after pruning, masks held
    student: str = "timm:mobilenetv3_small_050"
    student_pretrained: str = "none"
    student_pretrained_sha256: str = ""  # student_pretrained a file: its sha256 (required)
    distill_epochs: int = 3
    distill_lr: float = 0.003
    distill_temperature: float = 4.0
    distill_alpha: float = 0.7
    latency_runs: int = 20
    seed: int = 0


@dataclass(frozen=True)
class Params:
    data: DataCfg = field(default_factory=DataCfg)
    validate: ValidateCfg = field(default_factory=ValidateCfg)
    augment: AugmentCfg = field(default_factory=AugmentCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    evaluate: EvaluateCfg = field(default_factory=EvaluateCfg)
    register: RegisterCfg = field(default_factory=RegisterCfg)
    compress: CompressCfg = field(default_factory=CompressCfg)


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
