"""Stage `evaluate` on the session's tiny trained model: every declared output, consistent metrics."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from stages import evaluate
from vistune.models.classifier import Classifier
from vistune.config import EvaluateCfg
from vistune.evaluate.gradcam import gradcam, pick_samples
from vistune.layout import Layout

from tests.conftest import REPO

PNG = b"\x89PNG\r\n\x1a\n"


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
    for key in ("accuracy", "top5_accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_precision",
                "weighted_recall", "weighted_f1", "macro_roc_auc", "macro_average_precision", "ece",
                "ece_uncalibrated", "temperature", "robust_accuracy", "fgsm_accuracy", "pgd_accuracy",
                "model_size_mb", "images_per_s", "latency_p50_ms", "latency_p95_ms"):
        assert f"test_{key}" in m, key
    for key in ("accuracy", "macro_f1", "ece", "robust_accuracy", "macro_roc_auc"):
        assert 0.0 <= m[f"test_{key}"] <= 1.0
    assert m["test_top5_accuracy"] >= m["test_accuracy"]
    assert m["test_latency_p95_ms"] >= m["test_latency_p50_ms"] > 0
    assert m["test_model_size_mb"] == pytest.approx(lay.model.stat().st_size / 2**20)
    # every file dvc.yaml declares for the stage exists; PNGs are real PNGs
    for rel in _declared_eval_files():
        path = lay.root / rel
        assert path.is_file(), rel
        if rel.endswith(".png"):
            assert path.read_bytes()[:8] == PNG
    # metrics.json agrees with predictions.csv and the temperature it used
    preds = pd.read_csv(lay.predictions, dtype=str)
    assert m["test_n"] == len(preds)
    assert m["test_accuracy"] == pytest.approx((preds.actual == preds.predicted).mean())
    cal = json.loads(lay.calibration.read_text())
    assert cal["temperature"] == pytest.approx(m["test_temperature"]) and cal["temperature"] > 0
    rob = pd.read_csv(lay.robustness_csv)
    assert rob.perturbation.iloc[0] == "clean" and rob.accuracy.iloc[0] == pytest.approx(m["test_accuracy"])
    assert {"gaussian_noise", "blur", "salt_pepper", "brightness", "fgsm", "pgd"} <= set(rob.perturbation)


def test_switches_off_still_write_declared_files_and_flip_tta(trained_tiny: Layout, tmp_path):
    import shutil

    lay = Layout(tmp_path)
    shutil.copytree(trained_tiny.prepared, lay.prepared)
    lay.model.parent.mkdir(parents=True)
    shutil.copy(trained_tiny.model, lay.model)
    cfg = dataclasses.replace(EvaluateCfg(batch_size=64), temperature_scaling=False, robustness=False,
                              gradcam=False, latency=False, tta_flip=True, roc_max_classes=3)
    m = evaluate.run(cfg, "cpu", lay)
    assert m["test_temperature"] == 1.0 and m["test_ece"] == pytest.approx(m["test_ece_uncalibrated"])
    assert "test_robust_accuracy" not in m and "test_latency_p50_ms" not in m and "test_macro_roc_auc" not in m
    assert 0.0 <= m["test_tta_flip_accuracy"] <= 1.0
    assert pd.read_csv(lay.robustness_csv).empty
    for rel in _declared_eval_files():
        assert (lay.root / rel).is_file(), rel
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
