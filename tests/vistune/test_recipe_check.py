"""The probe check's own rules (vistune.recipe_check): the sample keeps every class, the size choice."""

from __future__ import annotations

import numpy as np

from vistune.recipe_check import FOLDS, SAMPLE, Measurement, SizeCheck, stratified_sample


def test_sample_is_stratified_seeded_and_keeps_rare_classes():
    labels = ["common"] * 2000 + ["rare"] * 7
    pick = stratified_sample(labels, SAMPLE, seed=0)
    got = np.asarray(labels)[pick]
    assert len(pick) <= SAMPLE + FOLDS and (got == "rare").sum() == FOLDS  # enough of the rare class for K folds
    assert np.array_equal(pick, stratified_sample(labels, SAMPLE, seed=0))
    assert not np.array_equal(pick, stratified_sample(labels, SAMPLE, seed=1))
    assert np.array_equal(stratified_sample(labels[:50], SAMPLE), np.arange(50))  # small sets: every image


def test_size_choice_is_the_smallest_within_a_point():
    m = Measurement("m", 300, 5, (SizeCheck(64, 0.927, None), SizeCheck(128, 0.96, None), SizeCheck(224, 0.95, 9.0)), 1)
    assert m.size_choice().size == 128 and m.best_accuracy == 0.96
    flat = Measurement("m", 300, 5, (SizeCheck(64, 0.955, None), SizeCheck(224, 0.962, None)), 1)
    assert flat.size_choice().size == 64
    assert any("224 px: accuracy 0.950, 9 img/s" in line for line in m.describe())
