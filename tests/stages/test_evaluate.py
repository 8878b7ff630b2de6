"""Stage `evaluate` on the session's tiny trained model: every declared output, and its content
checked against scikit-learn on the written predictions, and plots decoded."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from stages import evaluate
from vistune.models.classifier import Classifier
from vistune.config import EvaluateCfg
from vistune.evaluate.gradcam import gradcam, pick_samples
from vistune.layout import Layout

from tests.conftest import REPO

PLOT_PX = {  # (width, height) = matplotlib figsize x dpi 100, as plots.py draws them
    "roc_pr.png": (1100, 500),
    "reliability.png": (550, 500),
    "robustness.png": (1100, 450),
}
PLACEHOLDER_PX = (500, 120)


def _declared_eval_files() -> set[str]:
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["evaluate"]
    names = set()
    for key in ("outs", "metrics", "plots"):
        for item in stage.get(key, []):
            names.add(next(iter(item)) if isinstance(item, dict) else item)
    return names


def test_outputs_metrics_and_plots(trained_tiny: Layout):
    lay = trained_tiny
    m = json.loads(lay.eval_metrics.read_text())
    assert all(k.startswith("test_") for k in m)
    for key in (
        "accuracy",
        "top5_accuracy",
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "weighted_precision",
        "weighted_recall",
        "weighted_f1",
        "macro_roc_auc",
        "macro_average_precision",
        "ece",
        "ece_uncalibrated",
        "temperature",
        "robust_accuracy",
        "fgsm_accuracy",
        "pgd_accuracy",
        "model_size_mb",
        "images_per_s",
        "latency_p50_ms",
        "latency_p95_ms",
    ):
        assert f"test_{key}" in m, key
    for key in ("accuracy", "macro_f1", "ece", "robust_accuracy", "macro_roc_auc"):
        assert 0.0 <= m[f"test_{key}"] <= 1.0
    assert m["test_top5_accuracy"] >= m["test_accuracy"]
    assert m["test_latency_p95_ms"] >= m["test_latency_p50_ms"] > 0
    assert m["test_model_size_mb"] == pytest.approx(lay.model.stat().st_size / 2**20)
    # every file dvc.yaml declares for the stage exists; every PNG decodes to the figure's size
    for rel in _declared_eval_files():
        path = lay.root / rel
        assert path.is_file(), rel
        if rel.endswith(".png"):
            with Image.open(path) as im:
                im.load()
                assert im.format == "PNG", rel
                if Path(rel).name in PLOT_PX:
                    assert im.size == PLOT_PX[Path(rel).name], rel
    # metrics.json agrees with predictions.csv and the temperature it used
    preds = pd.read_csv(lay.predictions, dtype=str)
    assert m["test_n"] == len(preds)
    assert m["test_accuracy"] == pytest.approx((preds.actual == preds.predicted).mean())
    cal = json.loads(lay.calibration.read_text())
    assert cal["temperature"] == pytest.approx(m["test_temperature"]) and cal["temperature"] > 0
    rob = pd.read_csv(lay.robustness_csv)
    assert rob.perturbation.iloc[0] == "clean" and rob.accuracy.iloc[0] == pytest.approx(m["test_accuracy"])
    assert {"gaussian_noise", "blur", "salt_pepper", "brightness", "fgsm", "pgd"} <= set(rob.perturbation)


def test_metrics_and_class_report_equal_scikit_learn_on_predictions_csv(trained_tiny: Layout):
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    lay = trained_tiny
    m = json.loads(lay.eval_metrics.read_text())
    preds = pd.read_csv(lay.predictions, dtype={"actual": str, "predicted": str})
    classes = json.loads((lay.prepared / "meta.json").read_text())["classes"]
    y, p = preds.actual.to_numpy(), preds.predicted.to_numpy()
    present = [c for c in classes if c in set(y)]
    assert m["test_accuracy"] == pytest.approx(accuracy_score(y, p))
    for avg, labels in (("macro", present), ("weighted", classes)):
        prec, rec, f1, _ = precision_recall_fscore_support(y, p, labels=labels, average=avg, zero_division=0)
        got = (m[f"test_{avg}_precision"], m[f"test_{avg}_recall"], m[f"test_{avg}_f1"])
        assert got == pytest.approx((prec, rec, f1)), avg
    report = pd.read_csv(lay.class_report, dtype={"class": str})
    prec, rec, f1, support = precision_recall_fscore_support(y, p, labels=classes, average=None, zero_division=0)
    assert report["class"].tolist() == classes and report.support.tolist() == support.tolist()
    np.testing.assert_allclose(report[["precision", "recall", "f1"]].to_numpy(), np.c_[prec, rec, f1], atol=1e-12)
    md_rows = [line.split("|")[1:-1] for line in lay.class_report.with_suffix(".md").read_text().splitlines()[2:]]
    np.testing.assert_allclose([[float(v) for v in r[1:4]] for r in md_rows], np.c_[prec, rec, f1], atol=5e-5)


def test_ece_equals_the_binned_formula_on_written_confidences(trained_tiny: Layout):
    """ECE recomputed from predictions.csv (confidence and correctness per image, rounded to 1e-6)."""
    lay = trained_tiny
    m = json.loads(lay.eval_metrics.read_text())
    preds = pd.read_csv(lay.predictions, dtype={"actual": str, "predicted": str})
    bins = json.loads(lay.calibration.read_text())["ece_bins"]
    conf, correct = preds.confidence.to_numpy(), (preds.actual == preds.predicted).to_numpy()
    ece = 0.0
    for b in range(bins):  # (b / bins, (b + 1) / bins]
        inside = (conf > b / bins) & (conf <= (b + 1) / bins)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    assert m["test_ece"] == pytest.approx(ece, abs=1e-5)


def test_confusion_matrix_png_has_the_figure_size_and_the_colour_scale(trained_tiny: Layout):
    """10 classes -> a (2 * 6.5 + 1) x 6.5 inch figure at 100 dpi; the fullest cell of each panel is
    drawn in the darkest "Blues" colour, empty cells in its lightest."""
    import matplotlib

    with Image.open(trained_tiny.confusion_png) as im:
        rgb = np.asarray(im.convert("RGB")).reshape(-1, 3)
        assert im.size == (1400, 650)
    blues = matplotlib.colormaps["Blues"]
    colours = {tuple(c) for c in np.unique(rgb, axis=0)}
    darkest, lightest = (tuple(int(round(255 * v)) for v in blues(t)[:3]) for t in (1.0, 0.0))
    assert darkest in colours and lightest in colours
    preds = pd.read_csv(trained_tiny.predictions, dtype=str)
    classes = json.loads((trained_tiny.prepared / "meta.json").read_text())["classes"]
    cm = pd.crosstab(preds.actual, preds.predicted).reindex(index=classes, columns=classes, fill_value=0).to_numpy()
    assert cm.sum() == len(preds) and (cm == 0).any()  # the lightest colour above is a real empty cell


def test_switches_off_still_write_declared_files_and_flip_tta(trained_tiny: Layout, tmp_path):
    import shutil

    lay = Layout(tmp_path)
    shutil.copytree(trained_tiny.prepared, lay.prepared)
    lay.model.parent.mkdir(parents=True)
    shutil.copy(trained_tiny.model, lay.model)
    cfg = dataclasses.replace(
        EvaluateCfg(batch_size=64),
        temperature_scaling=False,
        robustness=False,
        gradcam=False,
        latency=False,
        tta_flip=True,
        roc_max_classes=3,
    )
    m = evaluate.run(cfg, "cpu", lay)
    assert m["test_temperature"] == 1.0 and m["test_ece"] == pytest.approx(m["test_ece_uncalibrated"])
    assert "test_robust_accuracy" not in m and "test_latency_p50_ms" not in m and "test_macro_roc_auc" not in m
    assert 0.0 <= m["test_tta_flip_accuracy"] <= 1.0
    assert pd.read_csv(lay.robustness_csv).empty
    for rel in _declared_eval_files():
        assert (lay.root / rel).is_file(), rel
    for path in (lay.robustness_png, lay.gradcam_png):  # switched off: a small "disabled" placeholder
        with Image.open(path) as im:
            assert im.size == PLACEHOLDER_PX
    # same model, same data -> same point metrics as the default run
    assert m["test_accuracy"] == pytest.approx(json.loads(trained_tiny.eval_metrics.read_text())["test_accuracy"])


def test_gradcam_maps_are_normalized_and_samples_fixed(trained_tiny: Layout):
    from vistune.data.prepared import load_prepared

    clf = Classifier.load(trained_tiny.model)
    x, _ = load_prepared(trained_tiny.prepared, splits=("test",)).tensors("test")
    cams = gradcam(clf.backbone, x[:4], torch.tensor([0, 1, 2, 3]), clf.device)
    assert cams.shape == (4, x.shape[2], x.shape[3])
    assert cams.min() >= 0 and cams.max() <= 1 + 1e-6
    y, p = np.array([0, 1, 2, 3, 4, 5]), np.array([0, 1, 0, 3, 0, 5])
    c1, w1 = pick_samples(y, p, 2, seed=3)
    c2, w2 = pick_samples(y, p, 2, seed=3)
    assert c1.tolist() == c2.tolist() and w1.tolist() == w2.tolist()
    assert all(y[i] == p[i] for i in c1) and all(y[i] != p[i] for i in w1) and len(c1) == len(w1) == 2
