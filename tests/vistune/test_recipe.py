"""The recipe rules (vistune.recipe) on hand-made profiles: budget -> backbone, data size -> epochs and
batch, photos vs small grayscale images, odd formats. Pure functions, no files."""

from __future__ import annotations

import dataclasses

import pytest

from vistune import recipe as r
from vistune.config import Params
from vistune.data.inspect import DataProfile, Spread
from vistune.recipe_check import BackboneCheck, Measurement, SizeCheck

ALL_LITES = [c.spec for c in r.CPU_COSTS]
CPU = r.DeviceFacts("cpu", "test CPU", 2)


def profile(
    n_train: int = 245,
    n_val: int = 76,
    n_test: int = 77,
    side: float = 374,
    modes=None,
    formats=None,
    classes=("a", "b"),
) -> DataProfile:
    n = n_train + n_val + n_test
    half = lambda k: {"a": k // 2, "b": k - k // 2}  # noqa: E731
    return DataProfile(
        source="x",
        kind="folder-splits",
        carved=("test",),
        classes=classes,
        counts={"train": half(n_train), "val": half(n_val), "test": half(n_test)},
        formats=formats or {"JPEG": n},
        modes=modes or {"RGB": n},
        short_side=Spread(side, side, side),
        long_side=Spread(side, side, side),
        aspect=Spread(1, 1, 1),
        undecodable=(),
        exact_duplicates=(),
        near_duplicates=(),
        leaks=(),
        refused=(),
        seconds=0.0,
    )


def values(rec: r.Recipe) -> dict:
    return {s.key: s.value for s in rec.settings}


def test_budget_picks_the_largest_backbone_that_fits():
    p = profile()
    small = values(r.make_recipe(p, CPU, ALL_LITES, "x", Params(), minutes=1))
    big = values(r.make_recipe(p, CPU, ALL_LITES, "x", Params(), minutes=10_000))
    assert small["train.model"] == ALL_LITES[0] and big["train.model"] == ALL_LITES[-1]
    # each pick is the largest whose own estimate fits: the next larger one would not
    for minutes in (3, 6, 9, 12, 20):
        rec = r.make_recipe(p, CPU, ALL_LITES, "x", Params(), minutes=minutes)
        i = ALL_LITES.index(values(rec)["train.model"])
        if rec.notes:  # nothing fits: lite0 with fewer epochs
            assert i == 0
            continue
        assert rec.estimated_minutes <= minutes
        if i + 1 < len(ALL_LITES):
            cost = r.CPU_COSTS[i + 1]
            probe = values(rec)["train.strategy"] == "linear_probe"
            size = r.image_size_for(p, cost.native, probe=probe)
            assert r.estimate_seconds(cost, size, values(rec)["train.epochs"], p, 2, probe) / 60 > minutes


def test_without_a_budget_the_default_one_picks_and_never_cuts_epochs():
    p = profile()  # hymenoptera's shape: a probe of the largest Lite fits the default budget
    rec = r.make_recipe(p, CPU, ALL_LITES, "x", Params())
    assert values(rec)["train.model"] == ALL_LITES[-1] and rec.estimated_minutes <= r.DEFAULT_MINUTES
    assert values(rec) == values(r.make_recipe(p, CPU, ALL_LITES, "x", Params(), minutes=r.DEFAULT_MINUTES))
    big = r.make_recipe(profile(n_train=5000, n_val=2000), CPU, ALL_LITES, "x", Params())
    assert values(big)["train.model"] == ALL_LITES[0] and values(big)["train.epochs"] == r.epochs_for(5000)
    assert big.estimated_minutes > r.DEFAULT_MINUTES and "--minutes cuts them" in big.notes[0]


def test_a_probe_is_costed_as_a_forward_pass_not_a_full_train_step():
    cost, p = r.CPU_COSTS[0], profile()
    full, probe = (r.estimate_seconds(cost, 224, 10, p, 2, probe) for probe in (False, True))
    per_image = (full - probe) / (10 * p.n_split("train"))
    assert per_image == pytest.approx(1 / cost.train_img_s - 1 / (cost.eval_img_s * r.PROBE_STEP_SHARE))


def test_a_budget_too_small_cuts_epochs_and_says_so():
    rec = r.make_recipe(profile(n_train=5000), CPU, ALL_LITES, "x", Params(), minutes=5)
    assert values(rec)["train.model"] == ALL_LITES[0]
    assert values(rec)["train.epochs"] < r.epochs_for(5000) or rec.estimated_minutes > 5
    assert rec.notes and "does not fit" in rec.notes[0]


def test_only_installed_backbones_are_picked():
    rec = r.make_recipe(profile(n_train=2000), CPU, ALL_LITES[:1], "x", Params(), minutes=10_000)
    assert values(rec)["train.model"] == ALL_LITES[0] and values(rec)["augment.image_size"] == r.CPU_COSTS[0].native


def test_a_frozen_backbone_gets_a_larger_input_when_the_photos_have_the_detail():
    lite0 = ALL_LITES[:1]
    probe = values(r.make_recipe(profile(n_train=245, side=374), CPU, lite0, "x", Params()))
    assert probe["train.strategy"] == "linear_probe" and probe["augment.image_size"] == 256  # Lite0: 224 x 1.14
    full = values(r.make_recipe(profile(n_train=2000, side=374), CPU, lite0, "x", Params()))
    assert full["train.strategy"] == "full" and full["augment.image_size"] == 224  # fine-tuning adapts: native
    small = values(r.make_recipe(profile(n_train=245, side=250), CPU, lite0, "x", Params()))
    assert small["augment.image_size"] == 224  # 250 px photos: not upscaled past their own detail
    lite2 = values(r.make_recipe(profile(n_train=245, side=374), CPU, ALL_LITES, "x", Params(), minutes=10_000))
    assert lite2["train.model"] == ALL_LITES[-1] and lite2["augment.image_size"] == 288  # 260 x 1.14 = 297 -> 288


def test_a_val_set_too_small_to_rank_epochs_keeps_the_last_weights():
    small = values(r.make_recipe(profile(n_val=76), CPU, ALL_LITES, "x", Params()))
    assert small["train.patience"] == 0 and small["train.keep"] == "last"
    large = values(r.make_recipe(profile(n_train=5000, n_val=2000), CPU, ALL_LITES, "x", Params()))
    assert "train.keep" not in large and "train.patience" not in large  # params.yaml's own (best, early stop)


@pytest.mark.parametrize("n_train, epochs", [(100, 25), (245, 11), (1259, 4), (100_000, 4), (10, 30)])
def test_epochs_follow_the_images_seen(n_train, epochs):
    assert r.epochs_for(n_train) == epochs


def test_batch_and_lr_scale_with_the_data_and_device():
    v = values(r.make_recipe(profile(n_train=2000), CPU, ALL_LITES, "x", Params()))
    assert v["train.batch_size"] == r.CPU_BATCH and v["train.lr"] == pytest.approx(r.PHOTO_LR * r.CPU_BATCH / 64)
    assert v["train.strategy"] == "full"
    tiny = values(r.make_recipe(profile(n_train=40), CPU, ALL_LITES, "x", Params()))
    assert tiny["train.batch_size"] == 8  # a quarter of 40, as a power of two, at least 8


def test_small_grayscale_images_keep_their_augmentation_and_size():
    digits = profile(n_train=1259, side=8, modes={"L": 1797}, formats={"PNG": 1797})
    assert not digits.is_photo
    v = values(r.make_recipe(digits, CPU, ALL_LITES, "sklearn:digits", Params()))
    assert v["augment.image_size"] == 32 and "augment.hflip" not in v and "augment.salt_pepper" not in v
    assert v["train.lr"] == pytest.approx(r.SMALL_LR * v["train.batch_size"] / 64)
    photo = values(r.make_recipe(profile(), CPU, ALL_LITES, "x", Params()))
    assert photo["augment.hflip"] == 0.5 and photo["augment.salt_pepper"] == 0.0


def test_a_rare_format_narrows_allowed_formats_and_a_missing_one_is_added():
    odd = profile(formats={"JPEG": 397, "GIF": 1})
    v = values(r.make_recipe(odd, CPU, ALL_LITES, "x", Params()))
    assert v["validate.allowed_formats"] == ("JPEG",)
    narrow = dataclasses.replace(Params(), validate=dataclasses.replace(Params().validate, allowed_formats=("PNG",)))
    v = values(r.make_recipe(profile(), CPU, ALL_LITES, "x", narrow))
    assert v["validate.allowed_formats"] == ("PNG", "JPEG")
    assert "validate.allowed_formats" not in values(r.make_recipe(profile(), CPU, ALL_LITES, "x", Params()))


def test_diff_lists_only_real_changes_and_pins_win():
    rec = r.make_recipe(profile(), CPU, ALL_LITES, "x", Params())
    changes = r.diff(rec, Params(), {"augment.salt_pepper": 0.02})
    keys = {c.key for c in changes}
    assert "augment.salt_pepper" not in keys  # Params() already has 0.02, the pinned value
    assert all(c.old != c.new for c in changes)
    applied = {c.key: c.new for c in changes}
    assert applied["data.source"] == "x"


def test_early_stopping_is_off_for_small_val_sets_only():
    assert values(r.make_recipe(profile(n_val=76), CPU, ALL_LITES, "x", Params()))["train.patience"] == 0
    assert "train.patience" not in values(r.make_recipe(profile(n_val=5000), CPU, ALL_LITES, "x", Params()))


def test_evaluate_runs_at_the_measured_cpu_batch_and_keeps_its_own_on_a_gpu():
    cpu = values(r.make_recipe(profile(), CPU, ALL_LITES, "x", Params()))
    assert cpu["evaluate.batch_size"] == r.CPU_EVAL_BATCH < Params().evaluate.batch_size
    gpu = values(r.make_recipe(profile(), r.DeviceFacts("cuda", "some GPU", 8), ALL_LITES, "x", Params()))
    assert "evaluate.batch_size" not in gpu


def test_gpu_takes_the_largest_backbone_without_a_time_estimate():
    rec = r.make_recipe(
        profile(n_train=1000), r.DeviceFacts("cuda", "some GPU", 8), ALL_LITES, "x", Params(), minutes=1
    )
    assert values(rec)["train.model"] == ALL_LITES[-1] and rec.estimated_minutes is None
    assert values(rec)["train.batch_size"] == r.GPU_BATCH and "not measured" in rec.notes[0]


def test_small_photo_sets_train_the_head_with_a_larger_lr():
    v = values(r.make_recipe(profile(n_train=245), CPU, ALL_LITES, "x", Params()))
    assert v["train.strategy"] == "linear_probe" and v["train.lr"] == pytest.approx(r.PROBE_LR * 32 / 64)
    digits = profile(n_train=500, side=8, modes={"L": 700}, formats={"PNG": 700})
    assert values(r.make_recipe(digits, CPU, ALL_LITES, "x", Params()))["train.strategy"] == "full"


@pytest.mark.parametrize("offline", [ALL_LITES, ALL_LITES[:1]])
def test_classes_named_like_imagenet_start_the_head_there_with_a_smaller_lr(offline):
    seeded = values(r.make_recipe(profile(classes=("ants", "bees")), CPU, offline, "x", Params()))
    assert seeded["train.head_init"] == "imagenet_names"
    picked = next(c for c in r.CPU_COSTS if c.spec == seeded["train.model"])
    assert picked.spec == offline[-1]  # the default budget takes the largest that fits
    assert seeded["train.lr"] == pytest.approx(picked.seeded_probe_lr * 32 / 64)
    assert all(c.seeded_probe_lr < r.PROBE_LR for c in r.CPU_COSTS)
    other = values(r.make_recipe(profile(classes=("ants", "widgets")), CPU, ALL_LITES, "x", Params()))
    assert other["train.head_init"] == "random" and other["train.lr"] == pytest.approx(r.PROBE_LR * 32 / 64)


def test_photos_under_a_larger_teacher_get_a_pretrained_lite0_student():
    big = values(r.make_recipe(profile(), CPU, ALL_LITES, "x", Params(), minutes=10_000))
    assert big["train.model"] == ALL_LITES[-1]
    assert big["compress.student"] == ALL_LITES[0] and big["compress.student_pretrained"] == "imagenet"
    assert big["compress.distill_strategy"] == big["train.strategy"] == "linear_probe"
    assert (big["compress.distill_epochs"], big["compress.distill_lr"]) == (big["train.epochs"], big["train.lr"])
    parsed = Params().compress.__class__(**{k.split(".")[1]: v for k, v in big.items() if k.startswith("compress.")})
    assert parsed.student == ALL_LITES[0]  # the settings pass the section's own checks together
    # the teacher is already the cheapest offline backbone, or the images are not photos: the defaults stay
    assert not any(
        k.startswith("compress.") for k in values(r.make_recipe(profile(), CPU, ALL_LITES, "x", Params(), minutes=1))
    )
    digits = profile(n_train=500, side=8, modes={"L": 700}, formats={"PNG": 700})
    assert not any(
        k.startswith("compress.") for k in values(r.make_recipe(digits, CPU, ALL_LITES, "x", Params(), minutes=10_000))
    )


# ---- rules over a measurement on the data (vistune.recipe_check) ---------------------------------------------
def measured(*checks: tuple[int, float]) -> Measurement:
    return Measurement("timm:tf_efficientnet_lite0", 300, 2, tuple(SizeCheck(s, a, None) for s, a in checks), 1.0)


def test_measured_probe_errors_decide_probe_or_fine_tuning():
    """n_train x (1 - probe accuracy) against FT_MIN_ERRORS, whatever the set's size."""
    lite0 = ALL_LITES[:1]
    big_separable = values(r.make_recipe(profile(n_train=5000), CPU, lite0, "x", Params(), None, measured((224, 1.0))))
    assert big_separable["train.strategy"] == "linear_probe"
    n = 1000
    just_under = 1 - (r.FT_MIN_ERRORS - 1) / n
    just_over = 1 - (r.FT_MIN_ERRORS + 1) / n
    for acc, want in ((just_under, "linear_probe"), (just_over, "full")):
        v = values(r.make_recipe(profile(n_train=n), CPU, lite0, "x", Params(), None, measured((224, acc))))
        assert v["train.strategy"] == want, acc
    small_hard = values(r.make_recipe(profile(n_train=245), CPU, lite0, "x", Params(), None, measured((224, 0.5))))
    assert small_hard["train.strategy"] == "full"  # 122 of 245 wrong: the old size rule would have probed
    # many errors but few images a class (cub_warblers: 30): the probe, which tied with fine-tuning there
    few = r.FT_MIN_PER_CLASS * 2 - 2
    v = values(r.make_recipe(profile(n_train=few), CPU, lite0, "x", Params(), None, measured((224, 0.5))))
    assert v["train.strategy"] == "linear_probe"


def test_measured_size_is_the_smallest_within_a_point_of_the_best():
    p = profile(n_train=4000, side=64, modes={"RGB": 4153})
    lite0 = ALL_LITES[:1]
    pick = lambda *c: values(r.make_recipe(p, CPU, lite0, "x", Params(), None, measured(*c)))["augment.image_size"]  # noqa: E731
    assert r.check_sizes(p, 224) == (64, 128, 224)
    assert pick((64, 0.927), (128, 0.960), (224, 0.950)) == 128  # eurosat's measurement
    assert pick((64, 0.955), (128, 0.960), (224, 0.962)) == 64
    assert pick((64, 0.90), (128, 0.92), (224, 0.96)) == 224
    # photos at least as large as the native size are checked at it alone; the old photo rules apply
    assert r.check_sizes(profile(side=374), 224) == (224,)


def test_measured_small_images_fit_the_budget_the_upsampled_ones_miss():
    """A 4000-image set of 64-px tiles at 224 px overruns the default budget; at the measured 128 px it fits."""
    p = profile(n_train=4000, n_val=500, n_test=500, side=64, modes={"RGB": 5000})
    lite0 = ALL_LITES[:1]
    at_224 = r.make_recipe(p, CPU, lite0, "x", Params(), None, measured((64, 0.90), (128, 0.92), (224, 0.96)))
    at_128 = r.make_recipe(p, CPU, lite0, "x", Params(), None, measured((64, 0.927), (128, 0.960), (224, 0.950)))
    assert at_224.estimated_minutes > r.DEFAULT_MINUTES >= at_128.estimated_minutes


def scored(base: Measurement, **acc: float) -> Measurement:
    """`base` with per-backbone probe accuracies, keyed lite0 / lite1 / lite2."""
    sizes = {"lite0": 256, "lite1": 288, "lite2": 288}
    return dataclasses.replace(
        base,
        backbones=tuple(BackboneCheck(f"timm:tf_efficientnet_{k}", sizes[k], a) for k, a in acc.items()),
    )


def test_only_a_measured_head_alone_asks_for_backbone_scores():
    separable, hard = measured((224, 0.99)), measured((224, 0.5))
    asked = r.backbones_to_score(profile(n_train=245), ALL_LITES, separable)
    assert set(asked) == set(ALL_LITES) and asked[ALL_LITES[-1]] == 288  # each at the size its probe runs at
    assert r.backbones_to_score(profile(n_train=3000), ALL_LITES, hard) == {}  # fine-tuning: no choice to make
    assert r.backbones_to_score(profile(n_train=245), ALL_LITES, None) == {}


def test_a_head_alone_takes_the_backbone_whose_features_score_best_and_that_fits():
    p, base = profile(n_train=447, classes=tuple("abcdefghijklmno")), measured((224, 0.879))
    pick = lambda m, minutes=None: values(r.make_recipe(p, CPU, ALL_LITES, "x", Params(), minutes, m))  # noqa: E731
    cub = scored(base, lite0=0.879, lite1=0.889, lite2=0.882)  # cub_warblers' sample: Lite1 best
    assert pick(cub)["train.model"] == ALL_LITES[1] and pick(cub)["train.strategy"] == "linear_probe"
    assert "probe accuracy" in next(
        s.reason for s in r.make_recipe(p, CPU, ALL_LITES, "x", Params(), None, cub).settings if s.key == "train.model"
    )
    hym = scored(base, lite0=0.955, lite1=0.959, lite2=0.971)
    assert pick(hym)["train.model"] == ALL_LITES[2]
    tie = scored(base, lite0=0.9, lite1=0.9, lite2=0.9)
    assert pick(tie)["train.model"] == ALL_LITES[0]  # a tie goes to the cheapest

    # the best does not fit a small budget: the next best that does
    def est(spec: str) -> float:
        cost = next(c for c in r.CPU_COSTS if c.spec == spec)
        return r.estimate_seconds(cost, 288, r.epochs_for(447), p, 2, True) / 60

    budget = (est(ALL_LITES[1]) + est(ALL_LITES[2])) / 2
    assert est(ALL_LITES[1]) < budget < est(ALL_LITES[2])
    assert pick(hym, budget)["train.model"] == ALL_LITES[1]


def test_measured_fine_tuning_takes_the_cheapest_backbone_at_any_budget():
    p = profile(n_train=4000, n_val=500, n_test=500, side=64, modes={"RGB": 5000})
    m = measured((64, 0.927), (128, 0.960), (224, 0.950))
    for minutes in (None, 30, 10_000):
        v = values(r.make_recipe(p, CPU, ALL_LITES, "x", Params(), minutes, m))
        assert (v["train.strategy"], v["train.model"], v["augment.image_size"]) == ("full", ALL_LITES[0], 128)
    # not measured (grayscale, no ImageNet weights): the largest that fits, as before
    assert values(r.make_recipe(p, CPU, ALL_LITES, "x", Params(), 10_000))["train.model"] == ALL_LITES[-1]
