"""The report vocabulary: which figures a reader sees first, which plots, and how a file becomes a line
or an inline image. `vistune metrics` (terminal), the Prefect run report (`flows/summary.py`) and the
model card (`app/card.py`) all read the run's files through here, so they show the same figures.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

# (label, metrics.json key, format): the headline of the run report and of `vistune metrics`
HEADLINE = (
    ("accuracy", "test_accuracy", "{:.4f}"),
    ("macro-F1", "test_macro_f1", "{:.4f}"),
    ("ECE (calibrated)", "test_ece", "{:.4f}"),
    ("robust accuracy (corruptions)", "test_robust_accuracy", "{:.4f}"),
    ("latency p50 (ms / image)", "test_latency_p50_ms", "{:.2f}"),
    ("model size (MB)", "test_model_size_mb", "{:.2f}"),
)
LOWER_IS_BETTER = {"test_ece", "test_latency_p50_ms", "test_model_size_mb"}  # of HEADLINE's keys

# (metrics.json key, label, bootstrap metric or None): the model card's headline rows, in this order
CARD_HEADLINE = (
    ("test_accuracy", "accuracy", "accuracy"),
    ("test_macro_f1", "macro-F1", "macro_f1"),
    ("test_top5_accuracy", "top-5 accuracy", None),
    ("test_weighted_f1", "weighted F1", None),
    ("test_ece", "ECE (after temperature scaling)", None),
    ("test_ece_uncalibrated", "ECE (before)", None),
    ("test_robust_accuracy", "accuracy under corruptions", None),
    ("test_fgsm_accuracy", "accuracy under FGSM", None),
    ("test_latency_p50_ms", "latency p50 (ms, batch 1)", None),
    ("test_model_size_mb", "model size (MB)", None),
)

# (Layout attribute, title): the model card's images, in this order
IMAGES = (
    ("confusion_png", "Confusion matrix (test)"),
    ("reliability_png", "Reliability diagram: before / after temperature scaling"),
    ("roc_pr_png", "ROC and precision-recall"),
    ("robustness_png", "Accuracy under corruptions and attacks"),
    ("gradcam_png", "Grad-CAM: correct and wrong"),
    ("label_issue_sheet", "Training photos whose label looks wrong (validate): given -> suggested label, score"),
    ("lookalike_sheet", "Val/test photos that look like another shot of a train photo (validate): left, right"),
)
# (Prefect artifact key, Layout attribute, description): the run report's images
RUN_IMAGES = (
    ("vistune-confusion-matrix-plot", "confusion_png", "test confusion matrix (rows actual, columns predicted)"),
    (
        "vistune-reliability-diagram",
        "reliability_png",
        "reliability diagram: confidence vs accuracy, before and after temperature scaling",
    ),
    (
        "vistune-label-issues",
        "label_issue_sheet",
        "photos whose label looks wrong: given -> suggested label "
        "(score); data/validated/label_issues.csv, `vistune labels`",
    ),
    (
        "vistune-lookalikes",
        "lookalike_sheet",
        "val/test photos (left) that look like another shot of a train photo (right): their scores are "
        "optimistic; lookalike_of in data/validated/manifest.csv",
    ),
)


def read_json(path: Path) -> dict:
    """A stage's JSON output, {} when that stage has not written it."""
    return json.loads(path.read_text()) if path.is_file() else {}


def data_uri(path: Path) -> str | None:
    """A PNG/JPEG inlined as a data URI (None when the stage did not write it): the page or artifact
    shows it with no other server running."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    mime = "image/jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "image/png"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
