"""Classification metrics: one dict feeds DVC's metrics.json and MLflow alike.

Confusion matrix, per-class precision/recall/F1 and the ROC/PR curves come from scikit-learn
(imported lazily: serving never loads it); this module fixes the conventions around them
(classes absent from the test split, one-class curves) that the reports and the gate rely on.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted."""
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    return sk_confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=np.arange(n_classes)).astype(np.int64)


def per_class_report(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support per class (0 where undefined)."""
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        np.asarray(y_true), np.asarray(y_pred), labels=np.arange(len(classes)), zero_division=0
    )
    return pd.DataFrame(
        {
            "class": classes,
            "precision": precision.astype(float),
            "recall": recall.astype(float),
            "f1": f1.astype(float),
            "support": support.astype(int),
        }
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
    report = per_class_report(y_true, y_pred, classes)
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


def binary_curves(scores: np.ndarray, positive: np.ndarray) -> dict[str, np.ndarray | float]:
    """ROC and precision-recall curves for one class, thresholds at every distinct score (scikit-learn,
    `drop_intermediate=False`), recall ascending. Ties share one threshold, so the ROC AUC equals the
    Mann-Whitney probability that a positive outranks a negative; average precision is the step-wise
    sum (no interpolation). A class with no positives (or no negatives) gets NaN AUC (and AP) and
    zero rates instead of scikit-learn's NaN/one curves, so the plot still draws.
    """
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    scores = np.asarray(scores, dtype=float)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not len(scores):
        zero = np.zeros(1)
        return {
            "fpr": zero,
            "tpr": zero,
            "precision": np.ones(1),
            "recall": zero,
            "roc_auc": float("nan"),
            "ap": float("nan"),
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # one-class curves: handled below
        warnings.filterwarnings("ignore", message="No positive class found")
        fpr, tpr, _ = roc_curve(positive, scores, drop_intermediate=False)
        precision, recall, _ = precision_recall_curve(positive, scores, drop_intermediate=False)
    return {
        "fpr": np.nan_to_num(fpr),
        "tpr": np.nan_to_num(tpr),
        "precision": precision[::-1],
        "recall": recall[::-1] if n_pos else np.zeros(len(recall)),
        "roc_auc": float(roc_auc_score(positive, scores)) if n_pos and n_neg else float("nan"),
        "ap": float(average_precision_score(positive, scores)) if n_pos else float("nan"),
    }


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
