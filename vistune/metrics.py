"""Classification metrics in numpy: one dict feeds DVC's metrics.json and MLflow alike."""

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


def summarize(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> tuple[dict[str, float], pd.DataFrame, np.ndarray]:
    """(scalar metrics, per-class report, confusion matrix)."""
    cm = confusion_matrix(y_true, y_pred, len(classes))
    report = per_class_report(cm, classes)
    present = report["support"] > 0
    weights = report["support"] / max(report["support"].sum(), 1)
    metrics = {
        "accuracy": float((np.asarray(y_true) == np.asarray(y_pred)).mean()) if len(y_true) else 0.0,
        "macro_precision": float(report.loc[present, "precision"].mean()),
        "macro_recall": float(report.loc[present, "recall"].mean()),
        "macro_f1": float(report.loc[present, "f1"].mean()),
        "weighted_f1": float((report["f1"] * weights).sum()),
        "n": int(len(y_true)),
    }
    return metrics, report, cm
