"""vistune.evaluate.drift on controlled samples: the tests reject a real difference, keep their level
under the null, and agree with scipy/sklearn references."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from vistune.evaluate import drift


def _gauss(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


def test_mmd_detects_a_mean_shift_and_not_a_fresh_sample():
    ref = _gauss(200, 16, 0)
    assert drift.mmd_test(ref, _gauss(150, 16, 1, shift=0.5)).p_value < 1e-3
    assert drift.mmd_test(ref, _gauss(150, 16, 2)).p_value > 0.05


def test_mmd_permutation_p_values_are_uniform_under_the_null():
    """Same distribution, 40 seeds: about 5% of p-values fall below 0.05 (a level-alpha test)."""
    ps = np.array(
        [
            drift.mmd_test(_gauss(40, 4, 2 * s), _gauss(40, 4, 2 * s + 1), permutations=199, seed=s).p_value
            for s in range(40)
        ]
    )
    assert (ps < 0.05).sum() <= 5
    assert 0.3 < ps.mean() < 0.7


def test_mmd_statistic_matches_the_kernel_definition():
    """V-statistic MMD^2 = mean k(x,x') + mean k(y,y') - 2 mean k(x,y) with the median-heuristic RBF."""
    from scipy.spatial.distance import cdist

    x, y = _gauss(30, 3, 0), _gauss(20, 3, 1, 0.3)
    z = np.concatenate([x, y])
    d2 = cdist(z, z, "sqeuclidean")
    k = np.exp(-d2 / np.median(d2[~np.eye(50, dtype=bool)]))
    expected = k[:30, :30].mean() + k[30:, 30:].mean() - 2 * k[:30, 30:].mean()
    assert drift.mmd_test(x, y, permutations=9).effect == pytest.approx(expected, rel=1e-9)


def test_manifest_tests_agree_with_scipy():
    from scipy.stats import chi2_contingency, ks_2samp

    rng = np.random.default_rng(0)
    ref = pd.DataFrame(
        {
            "label": rng.choice(["a", "b", "c"], 300),
            "width": rng.integers(30, 40, 300),
            "height": 32,
            "aspect": 1.0,
            "brightness": rng.uniform(0.2, 0.6, 300),
            "mode": "RGB",
        }
    )
    new = pd.DataFrame(
        {
            "label": rng.choice(["a", "b"], 100),
            "width": rng.integers(30, 40, 100),
            "height": 32,
            "aspect": 1.0,
            "brightness": rng.uniform(0.4, 0.8, 100),
            "mode": ["L"] * 20 + ["RGB"] * 80,
        }
    )
    tests = {t.name: t for t in drift.manifest_tests(ref, new, labelled=True)}
    assert set(tests) == {"classes", "width", "height", "aspect", "brightness", "mode"}
    ks = ks_2samp(ref.brightness, new.brightness)
    assert tests["brightness"].p_value == pytest.approx(ks.pvalue) and tests["brightness"].effect == pytest.approx(
        ks.statistic
    )
    table = pd.crosstab(pd.Series(["r"] * 300 + ["n"] * 100), pd.concat([ref.label, new.label], ignore_index=True))
    assert tests["classes"].p_value == pytest.approx(chi2_contingency(table.to_numpy(), correction=False).pvalue)
    shares_ref, shares_new = ref.label.value_counts(normalize=True), new.label.value_counts(normalize=True)
    tvd = 0.5 * sum(abs(shares_ref.get(c, 0) - shares_new.get(c, 0)) for c in "abc")
    assert tests["classes"].effect == pytest.approx(tvd)
    assert tests["mode"].effect == pytest.approx(0.2)
    assert tests["height"].p_value == 1.0  # identical columns


def test_decision_is_bonferroni_and_the_metric_is_flat_json():
    tests = [drift.DriftTest("a", 0.004, 0.3, 10, 10), drift.DriftTest("b", 0.5, 0.1, 10, 10)]
    res = drift.decide(tests, threshold=2.0, reference="m v1")
    assert res.p_value == pytest.approx(0.008) and res.drift_score == pytest.approx(-math.log10(0.008), abs=1e-4)
    assert res.drifted and "a differs most" in res.reason
    assert not drift.decide(tests, threshold=2.1, reference="m v1").drifted
    metrics = res.as_metrics()
    json.dumps(metrics)
    assert all(not isinstance(v, (dict, list)) for v in metrics.values())
    assert metrics["a_p"] == 0.004 and metrics["status"] == "compared"
    assert drift.skipped("no champion").as_metrics()["status"] == "skipped"


def test_unlabelled_new_data_skips_the_class_test():
    ref = pd.DataFrame(
        {"label": ["a", "b"] * 10, "width": 8, "height": 8, "aspect": 1.0, "brightness": 0.5, "mode": "L"}
    )
    new = ref.assign(label="")
    res = drift.compare(ref, new, 2.0)
    assert "classes" not in {t.name for t in res.tests} and not res.drifted
