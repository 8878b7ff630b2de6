"""Classification metrics in numpy: one dict feeds DVC's metrics.json and MLflow alike.

Everything here is plain numpy so a reviewer can check it against a hand-computed case
(see tests/vistune/test_metrics.py); no scikit-learn in the evaluation path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def per_class_report(cm: np.ndarray, classes: list[str]) -> pd.DataFrame:
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return pd.DataFrame(
        {"class": classes, "precision": precision, "recall": recall, "f1": f1, "support": support.astype(int)}
    )


def top_k_accuracy(probs: np.ndarray, y_true: np.ndarray, k: int) -> float:
    """Fraction of rows whose true class is among the k highest scores."""
    if len(y_true) == 0:
        return 0.0
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float((top == np.asarray(y_true)[:, None]).any(axis=1).mean())


def summarize(
    y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], probs: np.ndarray | None = None
) -> tuple[dict[str, float], pd.DataFrame, np.ndarray]:
    """(scalar metrics, per-class report, confusion matrix).

    Macro averages are over classes present in `y_true` (a class absent from the test split
    has no defined recall); weighted averages weight each class by its support.
    """
    cm = confusion_matrix(y_true, y_pred, len(classes))
    report = per_class_report(cm, classes)
    present = report["support"] > 0
    weights = report["support"] / max(report["support"].sum(), 1)
    metrics: dict[str, float] = {
        "accuracy": float((np.asarray(y_true) == np.asarray(y_pred)).mean()) if len(y_true) else 0.0,
        "macro_precision": float(report.loc[present, "precision"].mean()),
        "macro_recall": float(report.loc[present, "recall"].mean()),
        "macro_f1": float(report.loc[present, "f1"].mean()),
        "weighted_precision": float((report["precision"] * weights).sum()),
        "weighted_recall": float((report["recall"] * weights).sum()),
        "weighted_f1": float((report["f1"] * weights).sum()),
        "n": int(len(y_true)),
    }
    if probs is not None and len(classes) >= 5:
        metrics["top5_accuracy"] = top_k_accuracy(probs, y_true, 5)
    return metrics, report, cm


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def binary_curves(scores: np.ndarray, positive: np.ndarray) -> dict[str, np.ndarray | float]:
    """ROC and precision-recall curves for one class, thresholds at every distinct score.

    Ties share one threshold (scores sorted descending, cut where the score changes), so the
    ROC AUC equals the Mann-Whitney probability that a positive outranks a negative.
    Average precision is the step-wise sum of precision * recall increments (no interpolation).
    """
    scores = np.asarray(scores, dtype=float)
    positive = np.asarray(positive, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], positive[order]
    cut = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1] if len(s) else np.array([], dtype=int)
    tps = np.cumsum(p)[cut].astype(float)
    fps = (cut + 1) - tps
    n_pos, n_neg = float(p.sum()), float((~p).sum())
    tpr = np.r_[0.0, tps / n_pos] if n_pos else np.r_[0.0, np.zeros_like(tps)]
    fpr = np.r_[0.0, fps / n_neg] if n_neg else np.r_[0.0, np.zeros_like(fps)]
    precision = np.r_[1.0, tps / np.maximum(tps + fps, 1)]
    recall = tpr
    auc = _trapezoid(tpr, fpr) if n_pos and n_neg else float("nan")
    ap = float(np.sum(np.diff(recall) * precision[1:])) if n_pos else float("nan")
    return {"fpr": fpr, "tpr": tpr, "precision": precision, "recall": recall, "roc_auc": auc, "ap": ap}


def one_vs_rest_curves(probs: np.ndarray, y_true: np.ndarray, classes: list[str]) -> dict[str, dict]:
    """Per-class ROC/PR curves, class c against the rest, scored by p(c)."""
    y_true = np.asarray(y_true)
    return {c: binary_curves(probs[:, j], y_true == j) for j, c in enumerate(classes)}


def curve_summary(curves: dict[str, dict]) -> dict[str, float]:
    """Macro ROC AUC and macro average precision over classes where they are defined."""
    aucs = [c["roc_auc"] for c in curves.values() if np.isfinite(c["roc_auc"])]
    aps = [c["ap"] for c in curves.values() if np.isfinite(c["ap"])]
    out = {}
    if aucs:
        out["macro_roc_auc"] = float(np.mean(aucs))
    if aps:
        out["macro_average_precision"] = float(np.mean(aps))
    return out
