"""Typed configuration: `params.yaml` is parsed once into frozen dataclasses, one per stage.

DVC tracks the same file (each stage lists its own section under `params:`), so a stage
depends exactly on the keys its dataclass declares. Unknown keys are an error: a typo in
`params.yaml` must not silently fall back to a default.

Every allowed value is checked here too, when a section is built (parsed, `dataclasses.replace`d
or constructed in a test): enumerated keys are typed `Literal[...]`, ranges are `bounded(...)`
field metadata (pydantic's names, so the Prefect form in `flows/params.py` reuses them). The
defaults equal the committed `params.yaml` (tests/vistune/test_config.py compares them).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from vistune.errors import ConfigError

# The allowed values of each enumerated key, listed once; the core dispatches on these names
# (tests/vistune/test_config.py checks that its registries name the same ones).
StrategyName = Literal["linear_probe", "partial", "full", "lora", "bitfit"]  # vistune.train.finetune
ClassWeighting = Literal["none", "loss", "sampler"]
AdversarialKind = Literal["none", "fgsm", "pgd"]  # vistune.train.adversarial.ATTACKS
LrScaling = Literal["none", "linear", "sqrt"]  # vistune.train.steps.LR_SCALING
HeadInit = Literal["random", "imagenet_names", "features"]  # vistune.models.imagenet_names, vistune.train.head_fit
KeepWeights = Literal["best", "last"]  # vistune.train.checkpoint.Progress
AmpDtype = Literal["auto", "bfloat16", "float16"]  # vistune.models.device_policy.amp_dtype
AutoAugment = Literal["none", "trivial", "rand"]
OnDuplicate = Literal["quarantine", "warn", "fail"]
OnExtensionMismatch = Literal["warn", "quarantine"]
OnDrift = Literal["warn", "fail"]  # vistune.evaluate.drift: new data unlike the champion's training data
OnLabelIssue = Literal["warn", "exclude", "fail"]  # vistune.data.label_issues: images that look mislabelled
OnLookalike = Literal["warn", "exclude", "off"]  # vistune.data.lookalikes: another shot of a train photo in val/test
GateTest = Literal["none", "mcnemar", "bootstrap"]  # vistune.evaluate.significance.GATE_TESTS
Approval = Literal["auto", "required"]  # required: a reviewer approves promotion in the Prefect UI (flows/approval.py)
CompressVariant = Literal["onnx", "onnx_int8", "onnx_int8_dynamic", "pruned", "distilled"]
CalibrationMethod = Literal["minmax", "percentile", "entropy"]  # vistune.models.quantize.CALIBRATION_METHODS
# what a distilled student trains (train.strategy names; adapters are left out: the student file stores plain weights)
DistillStrategy = Literal["full", "partial", "linear_probe"]
CpuKernels = Literal["avx2", "native"]  # vistune.runtime: portable bytes (avx2) or the host's fastest kernels

_PYDANTIC_KEYS = ("ge", "gt", "le", "lt", "pattern")


def bounded(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    pattern: str | None = None,
    increasing: bool = False,
) -> Any:
    """A field with a range (each item's, for a tuple), a regex (strings) or an order (pairs).

    The names are pydantic's `Field` keywords, so `limits("train.lr")` feeds the Prefect form;
    a field declared without `bounded` has no bound.
    """
    meta: dict[str, Any] = {k: v for k, v in zip(_PYDANTIC_KEYS, (ge, gt, le, lt, pattern)) if v is not None}
    if increasing:
        meta["increasing"] = True
    return field(default=default, metadata=meta)


class _Checked:
    """Base of every section: each construction checks the values (`check_values`)."""

    def __post_init__(self) -> None:
        check_values(self)


@dataclass(frozen=True)
class DataCfg(_Checked):
    """Where images come from and how they are split when the source has no split folders."""

    source: str = "sklearn:digits"  # sklearn:digits, torchvision:<Dataset>, ImageFolder dir, archive or .csv
    val_fraction: float = bounded(0.15, ge=0, le=1)
    test_fraction: float = bounded(0.15, ge=0, le=1)
    max_per_class: int = bounded(0, ge=0)  # 0 keeps every image; >0 caps each class (fast demos, tests)
    cache_dir: str = ""  # torchvision:<Dataset> root; "" = ~/.cache/vistune/torchvision
    download: bool = True  # torchvision:<Dataset>: download when not already in cache_dir
    seed: int = bounded(42, ge=0)


@dataclass(frozen=True)
class ValidateCfg(_Checked):
    """Policy for what counts as bad data and how much of it is tolerated.

    `allowed_formats: []` accepts every format Pillow decodes fully (an animation's first frame,
    converted to RGB); list formats (`[PNG, JPEG]`) to narrow it. A file whose extension disagrees
    with its content is kept with a warning (`on_extension_mismatch: warn`) or quarantined. An image
    in two splits is always quarantined from val/test; the stage fails only when more than
    `max_leaked_fraction` of val+test leaked. `max_leaked` (older params files) stays an optional
    absolute cap on that count: -1 (default) = none; 0 fails on any leak, as before.
    """

    max_bad_fraction: float = bounded(0.05, ge=0, le=1)
    min_images_per_class: int = bounded(5, ge=0)
    min_side: int = bounded(8, ge=1)
    max_side: int = bounded(10000, ge=1)
    max_pixels: int = bounded(89_478_485, ge=1)  # PIL's own decompression-bomb limit; checked from the header
    decode_timeout_s: float = bounded(10.0, ge=0)  # wall-clock limit on decoding one image (0 = none)
    # () = any format Pillow decodes fully; names as PIL reports them (vistune.data.imageio.format_names())
    allowed_formats: tuple[str, ...] = bounded((), pattern=r"[A-Z0-9]+")
    # PIL modes accepted (each is normalized to RGB by vistune.data.imageio.to_rgb); drop one to flag it
    allowed_modes: tuple[str, ...] = (
        "1",
        "L",
        "LA",
        "P",
        "PA",
        "RGB",
        "RGBA",
        "RGBX",
        "CMYK",
        "YCbCr",
        "I",
        "I;16",
        "I;16B",
        "I;16L",
    )
    min_aspect: float = bounded(0.1, gt=0)  # width / height
    max_aspect: float = bounded(10.0, gt=0)
    on_duplicate: OnDuplicate = "quarantine"  # within a split: "quarantine" extra copies, "warn", or "fail"
    near_duplicate_distance: int = bounded(4, ge=-1, le=64)  # pHash Hamming distance (of 64 bits); -1 disables
    near_duplicate_min_side: int = bounded(32, ge=1)  # smaller images are too small for a perceptual hash
    on_extension_mismatch: OnExtensionMismatch = "warn"  # PNG named .jpg: "warn" (kept, flagged) or "quarantine"
    # images in two splits are always quarantined from val/test; fail when more than this share of val+test leaked
    max_leaked_fraction: float = bounded(0.05, ge=0, le=1)
    max_leaked: int = bounded(-1, ge=-1)  # optional absolute cap on that count; -1 = none
    max_imbalance_ratio: float = bounded(10.0, ge=1)  # warn when largest/smallest train class exceeds it
    workers: int = bounded(8, ge=1)  # decode threads
    # drift against the champion's training data (vistune.evaluate.drift): score = -log10(adjusted p-value)
    drift_threshold: float = bounded(2.0, ge=0)  # above it: drift (2.0 = adjusted p < 0.01)
    on_drift: OnDrift = "warn"  # "warn" or "fail" the stage
    drift_sample: int = bounded(500, ge=2, le=20000)  # new images embedded for the feature test (seeded)
    # label issues (vistune.data.label_issues): confident learning on K-fold probabilities of a linear head on
    # train.model's pretrained features of train+val; "exclude" quarantines flagged train images (code label_issue)
    on_label_issue: OnLabelIssue = "warn"
    label_issue_folds: int = bounded(5, ge=0, le=20)  # K of the K-fold; 0 = no label-issue search, 1 is refused
    label_issue_rounds: int = bounded(2, ge=1, le=5)  # refits without the flagged images (find_label_issues)
    max_label_issue_fraction: float = bounded(0.0, ge=0, le=1)  # on_label_issue fail: above this share of train+val
    # the same object in two splits (vistune.data.lookalikes): val/test images whose features match a train image's;
    # "warn" marks them (lookalike_of), "exclude" also quarantines them (code lookalike), "off" skips the search
    on_lookalike: OnLookalike = "warn"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.label_issue_folds == 1:
            raise ConfigError("params.yaml: validate.label_issue_folds=1 leaves no image out; valid: 0 (off) or 2-20")


@dataclass(frozen=True)
class AugmentCfg(_Checked):
    """Decode-once size and the per-batch training augmentation policy (timm option names).

    Every op is off at 0; see vistune.train.augment.list_augments() for the op names.
    """

    image_size: int = bounded(32, ge=8, le=1024)
    scale: tuple[float, float] = bounded((0.7, 1.0), gt=0, le=1, increasing=True)  # crop area range ((1, 1) = off)
    ratio: tuple[float, float] = bounded((0.75, 1.3333), gt=0, increasing=True)
    hflip: float = bounded(0.0, ge=0, le=1)
    rotation: float = bounded(10.0, ge=0, le=180)  # degrees, uniform in [-rotation, rotation]
    shear: float = bounded(0.0, ge=0, lt=90)  # degrees, x and y shear uniform in [-shear, shear]
    brightness: float = bounded(0.0, ge=0, le=1)  # color jitter: factor uniform in [1 - b, 1 + b]
    contrast: float = bounded(0.0, ge=0)
    saturation: float = bounded(0.0, ge=0)
    hue: float = bounded(0.0, ge=0, le=0.5)  # fraction of a full turn, uniform in [-hue, hue]
    gaussian_noise: float = bounded(0.0, ge=0)  # std of additive noise on [0, 1] pixels
    salt_pepper: float = bounded(0.02, ge=0, le=0.5)  # fraction of pixels set to black or white
    auto_augment: AutoAugment = "none"  # "none", "trivial" (TrivialAugment) or "rand" (RandAugment)
    aa_num_ops: int = bounded(2, ge=1)  # RandAugment ops per image
    aa_magnitude: float = bounded(0.5, ge=0, le=1)  # RandAugment magnitude as a fraction of each op's maximum
    reprob: float = bounded(0.0, ge=0, le=1)  # random erasing probability per image
    mixup: float = bounded(0.0, ge=0)  # mixup alpha (0 = off)
    cutmix: float = bounded(0.0, ge=0)  # cutmix alpha (0 = off); with both on, each batch picks one at random


@dataclass(frozen=True)
class TrainCfg(_Checked):
    """Fine-tuning recipe; names follow timm's train.py where one exists."""

    model: str = "timm:tf_efficientnet_lite0"
    pretrained: str = "imagenet"  # "imagenet", "none", or a path to a state-dict file
    pretrained_sha256: str = ""  # pretrained a file: its sha256, checked before loading (required)
    # imagenet_names: classes named like ImageNet classes (ants, bees) start from those rows of the ImageNet head;
    # features: a linear probe fitted on the frozen features of the train images (validate's cache; head_fit)
    head_init: HeadInit = "random"
    strategy: StrategyName = "full"  # see vistune.train.finetune.list_strategies()
    unfreeze_blocks: int = bounded(2, ge=1)  # strategy partial: how many of the last blocks train
    layer_decay: float = bounded(0.0, ge=0, le=1)  # strategy full: timm layer-wise LR decay (e.g. 0.75); 0 = off
    lora_rank: int = bounded(8, ge=1)  # strategy lora
    lora_alpha: float = bounded(16.0, gt=0)
    epochs: int = bounded(4, ge=1, le=1000)
    batch_size: int = bounded(64, ge=1, le=4096)
    lr: float = bounded(3e-3, gt=0, lt=10)
    min_lr: float = bounded(1e-5, ge=0)
    weight_decay: float = bounded(0.05, ge=0)
    warmup_epochs: float = bounded(1.0, ge=0)
    smoothing: float = bounded(0.1, ge=0, lt=1)
    clip_grad: float = bounded(0.0, ge=0)  # max global grad norm; 0 = off
    drop_rate: float = bounded(0.0, ge=0, lt=1)  # dropout before the classifier (timm models)
    drop_path_rate: float = bounded(0.0, ge=0, lt=1)  # stochastic depth (timm models)
    model_ema: bool = False  # keep an EMA of the weights; validate and keep the EMA model
    model_ema_decay: float = bounded(0.998, gt=0, lt=1)
    class_weighting: ClassWeighting = "none"  # "none", "loss" (weighted cross-entropy) or "sampler" (balanced)
    adversarial: AdversarialKind = "none"  # adversarial fine-tuning (vistune.train.adversarial)
    adv_epsilon: float = bounded(0.016, ge=0, le=1)  # L-inf radius on [0, 1] pixels, before normalization (4/255)
    adv_steps: int = bounded(3, ge=0)  # pgd iterations (>= 1 for pgd: vistune.train.adversarial)
    adv_step_size: float = bounded(0.0, ge=0)  # pgd step; 0 = 2.5 * adv_epsilon / adv_steps
    adv_fraction: float = bounded(0.5, ge=0, le=1)  # share of batches trained on adversarial images (the rest clean)
    patience: int = bounded(3, ge=0)  # epochs without val improvement before stopping; 0 disables
    # weights kept: "best" val accuracy (the first epoch on a tie) or the "last" epoch (val too small to rank epochs)
    keep: KeepWeights = "best"
    amp: bool = True  # CUDA autocast: bf16 where supported, else fp16 + GradScaler; ignored on CPU (fp32)
    amp_dtype: AmpDtype = "auto"  # CUDA autocast dtype: auto (bf16 if supported) | bfloat16 | float16
    compile: bool = False  # torch.compile the model (CUDA; slow first epoch)
    channels_last: bool = True  # NHWC weights and inputs on every device (train, evaluate, serve)
    sync_bn: bool = False  # DDP on CUDA: BatchNorm statistics over the global batch (SyncBatchNorm)
    lr_scaling: LrScaling = "linear"  # DDP: lr x world_size ("linear"), x sqrt(world_size) ("sqrt") or "none"
    device: str = bounded("auto", pattern=r"auto|cpu|mps|cuda(:\d+)?")  # "auto", "cpu", "cuda", "cuda:1"
    seed: int = bounded(42, ge=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.head_init == "imagenet_names" and self.pretrained != "imagenet":
            raise ConfigError(
                f"params.yaml: train.head_init=imagenet_names needs train.pretrained=imagenet "
                f"(got {self.pretrained!r}): the rows come from the ImageNet classifier; "
                "set train.head_init to random"
            )


@dataclass(frozen=True)
class EvaluateCfg(_Checked):
    """What the evaluate stage measures beyond accuracy; each extra is a switch (all cheap by default)."""

    batch_size: int = bounded(256, ge=1)
    ece_bins: int = bounded(15, ge=1)
    temperature_scaling: bool = True  # fit T on val; stored in calibration.json and applied when serving
    tta_flip: bool = False  # also report accuracy with horizontal-flip test-time augmentation
    roc_max_classes: int = bounded(10, ge=0)  # ROC/PR curves only for this many classes or fewer
    robustness: bool = True
    robust_severities: tuple[int, ...] = bounded((1, 3, 5), ge=1, le=5)  # see vistune.evaluate.robustness
    attack_eps: tuple[float, ...] = bounded((0.004, 0.016), gt=0, le=1)  # L-inf in [0, 1] pixel units; () skips attacks
    pgd_steps: int = bounded(3, ge=0)  # 0 skips PGD (FGSM still runs)
    robust_max_images: int = bounded(128, ge=1)  # robustness and attacks on the first N test images
    gradcam: bool = True
    gradcam_samples: int = bounded(8, ge=1)  # per row: correct and wrong predictions
    latency: bool = True
    latency_runs: int = bounded(20, ge=1)
    seed: int = bounded(0, ge=0)


@dataclass(frozen=True)
class RegisterCfg(_Checked):
    """Where the MLflow store lives and the promotion rule for the `champion` alias."""

    model_name: str = "vistune-classifier"
    experiment: str = "vistune"
    tracking_uri: str = "sqlite:///mlflow/mlflow.db"
    artifact_root: str = "mlflow/artifacts"
    gate_metric: str = "test_macro_f1"
    min_improvement: float = bounded(0.0, ge=-1, le=1)
    min_accuracy: float = bounded(0.0, ge=0, le=1)  # floor on test_accuracy
    max_ece: float = bounded(1.0, ge=0, le=1)  # ceiling on test_ece (checked when evaluate reports it)
    min_robust_accuracy: float = bounded(0.0, ge=0, le=1)  # floor on test_robust_accuracy (checked when reported)
    gate_test: GateTest = "mcnemar"  # challenger vs champion re-scored on the same test split
    gate_alpha: float = bounded(0.05, gt=0, lt=1)  # significance level of gate_test
    gate_n_boot: int = bounded(1000, ge=1)  # paired bootstrap resamples for the gate report's confidence intervals
    allow_dirty: bool = False  # false: refuse to register from a git tree with uncommitted source changes
    retries: int = bounded(3, ge=0)  # tracking-server calls: extra attempts after the first, exponential backoff
    retry_backoff_s: float = bounded(2.0, ge=0)  # first wait; doubles each retry
    approval: Approval = "auto"  # auto: the gate promotes; required: the flow run waits for a reviewer
    approval_timeout_h: float = bounded(24.0, gt=0, le=24 * 30)  # no answer by then: stays challenger


@dataclass(frozen=True)
class CompressCfg(_Checked):
    """Optional smaller variants of the trained model (stage `compress`); off by default."""

    enabled: bool = False
    variants: tuple[CompressVariant, ...] = ("onnx", "onnx_int8", "pruned", "distilled")
    prune_amount: float = bounded(0.5, ge=0, lt=1)  # fraction of conv/linear weights zeroed (global magnitude)
    finetune_epochs: int = bounded(1, ge=0)  # fine-tune after pruning, masks held (0 = none)
    student: str = bounded("timm:mobilenetv3_small_050", pattern=r"(timm|torchvision):.+")  # a backbone spec
    # as train.pretrained: "imagenet" (offline for timm:tf_efficientnet_lite0/1/2, see list_backbones()), "none"
    # (from scratch: only for data the student can learn alone, e.g. digits), or a state-dict file
    student_pretrained: str = bounded("none", pattern=r".+")
    student_pretrained_sha256: str = bounded("", pattern=r"|[0-9a-fA-F]{64}")  # student_pretrained a file: its sha256
    distill_strategy: DistillStrategy = "full"  # as train.strategy; linear_probe / partial need a pretrained student
    distill_unfreeze_blocks: int = bounded(2, ge=1)  # distill_strategy partial: the last blocks that train
    distill_epochs: int = bounded(15, ge=1)
    distill_lr: float = bounded(0.005, gt=0, lt=10)
    distill_temperature: float = bounded(4.0, gt=0)
    distill_alpha: float = bounded(0.7, ge=0, le=1)
    latency_runs: int = bounded(20, ge=1)
    seed: int = bounded(0, ge=0)
    calibration_images: int = bounded(256, ge=1)  # onnx_int8: train images (seeded choice) fixing activation ranges
    calibration_method: CalibrationMethod = "minmax"
    max_drop: float = bounded(0.01, ge=0, le=1)  # a variant's gate: test accuracy at most this far below fp32
    max_slowdown: float = bounded(0.1, ge=0)  # ... and p50 latency at most this fraction above fp32's

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.distill_strategy != "full" and self.student_pretrained == "none":
            raise ConfigError(
                f"params.yaml: compress.distill_strategy={self.distill_strategy!r} keeps some of the "
                "student's layers frozen, but compress.student_pretrained is 'none' (random layers); "
                "valid: distill_strategy 'full', or student_pretrained 'imagenet' or a weights file"
            )


@dataclass(frozen=True)
class RuntimeCfg(_Checked):
    """How the stages execute on a CPU, not what they compute; every torch stage lists it as a DVC param."""

    cpu_kernels: CpuKernels = "avx2"  # avx2: same bytes on any x86-64 CPU | native: the CPU's fastest kernels
    threads: int = bounded(2, ge=0)  # CPU intra-op threads; the bytes depend on it too; 0 = all cores


@dataclass(frozen=True)
class LoopCfg(_Checked):
    """The continuous-training loop's switches, read when the deployments are built (flows/serve.py):
    a retrain trigger switched off here is not registered at all (docs/continuous-training.md)."""

    retrain_on_arrival: bool = True  # vistune.data.arrived (the watch flow) starts a train-pipeline run
    retrain_on_drift: bool = True  # vistune.data.drifted above validate.drift_threshold starts one
    debounce_s: int = bounded(600, ge=1)  # one retrain per burst of events this long (seconds)


@dataclass(frozen=True)
class Params:
    runtime: RuntimeCfg = field(default_factory=RuntimeCfg)
    data: DataCfg = field(default_factory=DataCfg)
    validate: ValidateCfg = field(default_factory=ValidateCfg)
    augment: AugmentCfg = field(default_factory=AugmentCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    evaluate: EvaluateCfg = field(default_factory=EvaluateCfg)
    register: RegisterCfg = field(default_factory=RegisterCfg)
    compress: CompressCfg = field(default_factory=CompressCfg)
    loop: LoopCfg = field(default_factory=LoopCfg)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _section(cls: type) -> str:
    return {h: name for name, h in _hints(Params).items()}.get(cls, cls.__name__)


def _show(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def _interval(meta: Mapping[str, Any], name: str) -> str:
    """The range as `0 < lr < 10`."""
    lo = f"{meta['ge']} <= " if "ge" in meta else f"{meta['gt']} < " if "gt" in meta else ""
    hi = f" <= {meta['le']}" if "le" in meta else f" < {meta['lt']}" if "lt" in meta else ""
    return f"{lo}{name}{hi}"


def _in_range(x: float, meta: Mapping[str, Any]) -> bool:
    return (
        ("ge" not in meta or x >= meta["ge"])
        and ("gt" not in meta or x > meta["gt"])
        and ("le" not in meta or x <= meta["le"])
        and ("lt" not in meta or x < meta["lt"])
    )


def _why_not(value: Any, hint: Any, meta: Mapping[str, Any], name: str) -> str | None:
    """Why `value` is not allowed for the field, ending with the valid values; None when it is."""
    is_tuple = typing.get_origin(hint) is tuple
    items, item_hint = (value, typing.get_args(hint)[0]) if is_tuple else ((value,), hint)
    choices = typing.get_args(item_hint) if typing.get_origin(item_hint) is Literal else ()
    label = "each item" if is_tuple else name
    for x in items:
        what = f"item {x!r}" if is_tuple else "value"
        if choices and x not in choices:
            return f"{what} is not allowed; valid: {list(choices)}"
        if "pattern" in meta and not (isinstance(x, str) and re.fullmatch(meta["pattern"], x)):
            return f"{what} has the wrong form; valid: {meta['pattern']} (regular expression)"
        if isinstance(x, (int, float)) and not isinstance(x, bool) and not _in_range(x, meta):
            return f"{what} out of range; valid: {_interval(meta, label)}"
    if meta.get("increasing") and list(items) != sorted(items):
        return f"must be in increasing order; valid: [low, high] with low <= high, {_interval(meta, label)}"
    return None


def check_values(cfg: Any) -> None:
    """Raise one ConfigError line naming the first key of section `cfg` whose value is not allowed."""
    hints = _hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        why = _why_not(value, hints[f.name], f.metadata, f.name)
        if why:
            raise ConfigError(f"params.yaml: {_section(type(cfg))}.{f.name}={_show(value)}: {why}")


def limits(key: str) -> dict[str, Any]:
    """The bounds of one dotted key (`train.lr`) as pydantic `Field` keywords; {} when unbounded."""
    section, name = key.split(".", 1)
    meta = {f.name: f.metadata for f in dataclasses.fields(_hints(Params)[section])}[name]
    return {k: v for k, v in meta.items() if k in _PYDANTIC_KEYS}


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


# keys that moved to another section: an older params.yaml gets told where, not just "unknown key"
MOVED_KEYS = {"train.threads": "runtime.threads"}


def _build(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"params.yaml: section {where!r} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    moved = [f"{where}.{k} is now {MOVED_KEYS[f'{where}.{k}']}" for k in unknown if f"{where}.{k}" in MOVED_KEYS]
    if moved:
        raise ConfigError(f"params.yaml: {'; '.join(moved)}; move the key there")
    if unknown:
        raise ConfigError(f"params.yaml: unknown key(s) {unknown} in {where or 'top level'}; valid keys: {names}")
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
