"""Metrics against hand-computed small cases (and scikit-learn as an independent second opinion)."""

from __future__ import annotations

import numpy as np
import pytest

from vistune.evaluate.metrics import (
    binary_curves,
    confusion_matrix,
    curve_summary,
    one_vs_rest_curves,
    summarize,
    top_k_accuracy,
)


def test_three_class_case_by_hand():
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 2, 0])
    m, report, cm = summarize(y, p, ["a", "b", "c"])
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert report.precision.tolist() == pytest.approx([1 / 2, 2 / 3, 1.0])
    assert report.recall.tolist() == pytest.approx([1 / 2, 1.0, 1 / 2])
    assert report.f1.tolist() == pytest.approx([0.5, 0.8, 2 / 3])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["macro_precision"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert m["macro_recall"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["n"] == 6
    assert "top5_accuracy" not in m  # fewer than 5 classes


def test_weighted_averages_follow_support():
    y = np.array([0, 0, 0, 1])
    p = np.array([0, 0, 1, 1])
    m, _, _ = summarize(y, p, ["x", "y"])
    assert m["weighted_precision"] == pytest.approx(0.75 * 1.0 + 0.25 * 0.5)
    assert m["weighted_recall"] == pytest.approx(m["accuracy"]) == pytest.approx(0.75)
    assert m["weighted_f1"] == pytest.approx(0.75 * 0.8 + 0.25 * 2 / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)


def test_absent_class_is_left_out_of_macro_averages():
    m, report, _ = summarize(np.array([0, 0, 1]), np.array([0, 0, 1]), ["a", "b", "never"])
    assert report.support.tolist() == [2, 1, 0]
    assert m["macro_f1"] == pytest.approx(1.0)


def test_top5_by_hand():
    probs = np.array(
        [
            [
                0.50,
                0.20,
                0.10,
                0.10,
                0.05,
                0.05,
            ],  # true 5: ranked 5th/6th tie -> stable sort keeps index 4 first -> miss
            [0.05, 0.10, 0.15, 0.20, 0.25, 0.25],  # true 0: last -> miss
            [0.30, 0.25, 0.20, 0.15, 0.06, 0.04],  # true 4: 5th -> hit
        ]
    )
    y = np.array([5, 0, 4])
    assert top_k_accuracy(probs, y, 5) == pytest.approx(1 / 3)
    assert top_k_accuracy(probs, y, 1) == pytest.approx(0.0)
    m, _, _ = summarize(y, probs.argmax(1), list("abcdef"), probs)
    assert m["top5_accuracy"] == pytest.approx(1 / 3)


def test_roc_auc_and_average_precision_by_hand():
    c = binary_curves(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0]))
    assert c["roc_auc"] == pytest.approx(3 / 4)  # 3 of 4 positive-negative pairs ordered right
    assert c["ap"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert c["fpr"].tolist() == pytest.approx([0, 0, 0.5, 0.5, 1])
    assert c["tpr"].tolist() == pytest.approx([0, 0.5, 0.5, 1, 1])


def test_ties_share_one_threshold():
    c = binary_curves(np.array([0.5, 0.5]), np.array([1, 0]))
    assert c["roc_auc"] == pytest.approx(0.5)
    assert c["fpr"].tolist() == [0.0, 1.0]


def test_one_vs_rest_matches_scikit_learn_on_random_scores():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=300)
    probs = rng.dirichlet(np.ones(4), size=300)
    probs[np.arange(300), y] += 0.3  # informative but imperfect
    probs = np.round(probs / probs.sum(1, keepdims=True), 2)  # rounding creates ties
    curves = one_vs_rest_curves(probs, y, ["a", "b", "c", "d"])
    for j, c in enumerate(curves.values()):
        assert c["roc_auc"] == pytest.approx(roc_auc_score(y == j, probs[:, j]))
        assert c["ap"] == pytest.approx(average_precision_score(y == j, probs[:, j]))
    s = curve_summary(curves)
    assert s["macro_roc_auc"] == pytest.approx(np.mean([c["roc_auc"] for c in curves.values()]))


def test_class_without_positives_has_no_auc_and_is_skipped():
    curves = one_vs_rest_curves(np.array([[0.8, 0.2], [0.6, 0.4]]), np.array([0, 0]), ["a", "b"])
    assert np.isnan(curves["a"]["roc_auc"])  # no negatives
    assert curve_summary(curves) == {"macro_average_precision": pytest.approx(1.0)}


def test_confusion_matrix_counts():
    assert confusion_matrix(np.array([1, 1, 0]), np.array([1, 0, 0]), 2).tolist() == [[1, 0], [1, 1]]


def test_summary_matches_scikit_learn_on_a_random_case_with_an_absent_class():
    from sklearn.metrics import accuracy_score, confusion_matrix as sk_confusion, precision_recall_fscore_support

    rng = np.random.default_rng(1)
    y = rng.choice([0, 1, 2, 4], size=400, p=[0.5, 0.3, 0.15, 0.05])  # class 3 never occurs
    p = np.where(rng.random(400) < 0.6, y, rng.integers(0, 5, 400))
    m, report, cm = summarize(y, p, list("abcde"))
    assert cm.tolist() == sk_confusion(y, p, labels=range(5)).tolist()
    assert m["accuracy"] == pytest.approx(accuracy_score(y, p))
    prec, rec, f1, support = precision_recall_fscore_support(y, p, labels=range(5), average=None, zero_division=0)
    np.testing.assert_allclose(report[["precision", "recall", "f1"]].to_numpy(), np.c_[prec, rec, f1])
    assert report.support.tolist() == support.tolist()
    for avg, labels in (("macro", [0, 1, 2, 4]), ("weighted", range(5))):
        expected = precision_recall_fscore_support(y, p, labels=labels, average=avg, zero_division=0)[:3]
        assert (m[f"{avg}_precision"], m[f"{avg}_recall"], m[f"{avg}_f1"]) == pytest.approx(expected)
