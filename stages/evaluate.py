"""Stage `evaluate`: score the trained model on the held-out test split.

Writes `metrics.json` (DVC metrics, `test_*` keys), the per-class report (CSV + markdown),
`predictions.csv` (a DVC confusion plot), confusion / ROC-PR / reliability PNGs, the fitted
temperature (`calibration.json`, served with the model), the robustness table + plot, a Grad-CAM
grid, latency/size figures, and the drift reference (embeddings of a sample of the train split).
Every optional part is an `evaluate.*` switch; a switched-off part still writes its files (a
placeholder PNG, a header-only CSV) so DVC's outs always exist.
"""

from __future__ import annotations

import sys
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from stages.cli import stage_main
from vistune.evaluate import calibration
from vistune.evaluate import drift
from vistune.evaluate import gradcam
from vistune.evaluate import latency
from vistune.evaluate import ood
from vistune.evaluate import robustness
from vistune.models.classifier import Classifier
from vistune.config import EvaluateCfg
from vistune.data.prepared import load_prepared
from vistune.io import write_json, write_text
from vistune.layout import Layout
from vistune.evaluate.metrics import curve_summary, one_vs_rest_curves, summarize
from vistune.evaluate.plots import (
    confusion_matrix_png,
    gradcam_grid_png,
    placeholder_png,
    reliability_png,
    robustness_png,
    roc_pr_png,
)


def _calibrate(cfg: EvaluateCfg, clf: Classifier, data, logits: torch.Tensor, y: np.ndarray, layout: Layout) -> dict:
    """Fit T on val (if enabled) and the out-of-distribution threshold (energy at 95% of val), write
    calibration.json + reliability plot; ECE before and after."""
    temperature, threshold = 1.0, None
    if len(data.splits["val"]):
        val_x, val_y = data.tensors("val")
        val_logits = clf.logits(val_x, batch_size=cfg.batch_size)
        threshold = ood.fit_threshold(val_logits)
        if cfg.temperature_scaling:
            temperature = calibration.fit_temperature(val_logits, val_y)
    raw = logits.softmax(dim=1).numpy()
    scaled = (logits / temperature).softmax(dim=1).numpy()
    tables = {"raw": calibration.reliability_table(raw, y, cfg.ece_bins)}
    if cfg.temperature_scaling:
        tables[f"temperature {temperature:.2f}"] = calibration.reliability_table(scaled, y, cfg.ece_bins)
    out = {
        "temperature": temperature,
        "ece": calibration.expected_calibration_error(scaled, y, cfg.ece_bins),
        "ece_uncalibrated": calibration.expected_calibration_error(raw, y, cfg.ece_bins),
        "nll": float(torch.nn.functional.cross_entropy(logits / temperature, torch.from_numpy(y)).item())
        if len(y)
        else 0.0,
    }
    write_json(
        layout.calibration,
        {
            "temperature": temperature,
            "fitted_on": "val" if cfg.temperature_scaling else None,
            "ece_bins": cfg.ece_bins,
            "test_ece": out["ece"],
            "test_ece_uncalibrated": out["ece_uncalibrated"],
            "ood_energy_threshold": threshold,
            "ood_val_quantile": ood.QUANTILE,
        },
    )
    write_text(layout.reliability_csv, pd.concat([t.assign(variant=k) for k, t in tables.items()]).to_csv(index=False))
    reliability_png(tables, layout.reliability_png)
    return out


def _robustness(cfg: EvaluateCfg, clf: Classifier, images: torch.Tensor, labels: torch.Tensor, layout: Layout) -> dict:
    if not cfg.robustness:
        write_text(layout.robustness_csv, "perturbation,severity,accuracy\n")
        placeholder_png(layout.robustness_png, "robustness disabled (evaluate.robustness: false)")
        return {}
    n = cfg.robust_max_images
    table = robustness.robustness_table(
        clf.backbone,
        images[:n],
        labels[:n],
        clf.device,
        cfg.robust_severities,
        cfg.attack_eps,
        cfg.pgd_steps,
        cfg.batch_size,
        cfg.seed,
    )
    write_text(layout.robustness_csv, table.round(6).to_csv(index=False))
    robustness_png(table, layout.robustness_png)
    return robustness.robustness_summary(table)


def _gradcam(
    cfg: EvaluateCfg, clf: Classifier, images: torch.Tensor, y: np.ndarray, pred: np.ndarray, layout: Layout
) -> None:
    if not cfg.gradcam:
        placeholder_png(layout.gradcam_png, "Grad-CAM disabled (evaluate.gradcam: false)")
        return
    rows = []
    for title, idx in zip(("correct", "wrong"), gradcam.pick_samples(y, pred, cfg.gradcam_samples, cfg.seed)):
        batch = images[idx]
        cams = (
            gradcam.gradcam(clf.backbone, batch, torch.from_numpy(pred[idx]), clf.device)
            if len(idx)
            else np.zeros((0,))
        )
        caps = [f"{clf.classes[y[i]]}→{clf.classes[pred[i]]}" for i in idx]
        rows.append((title, batch.numpy(), cams, caps))
    gradcam_grid_png(rows, layout.gradcam_png)


def _drift_reference(clf: Classifier, layout: Layout, seed: int) -> None:
    """Embeddings of a seeded sample of the train split: what later drift checks (`validate`,
    `vistune score`) compare new images with; logged with the model by `register`."""
    train_x, _ = load_prepared(layout.prepared, splits=("train",)).tensors("train")
    drift.save_reference(layout.drift_reference, drift.reference_features(clf.backbone, train_x, clf.device, seed))


def run(cfg: EvaluateCfg, device: str, layout: Layout) -> dict[str, float]:
    clf = Classifier.load(layout.model, device=device)
    data = load_prepared(layout.prepared, splits=("val", "test"))
    images, labels = data.tensors("test")
    logits = clf.logits(images, batch_size=cfg.batch_size)
    y = labels.numpy()
    pred = logits.argmax(dim=1).numpy()
    layout.eval_dir.mkdir(parents=True, exist_ok=True)
    cal = _calibrate(cfg, clf, data, logits, y, layout)
    probs = (logits / cal["temperature"]).softmax(dim=1).numpy()
    scalars, report, cm = summarize(y, pred, clf.classes, probs)
    scalars.update(cal)
    if cfg.tta_flip:
        flipped = clf.logits(images.flip(-1), batch_size=cfg.batch_size)
        scalars["tta_flip_accuracy"] = float(((logits + flipped).argmax(1).numpy() == y).mean()) if len(y) else 0.0
    if len(clf.classes) <= cfg.roc_max_classes:
        curves = one_vs_rest_curves(probs, y, clf.classes)
        scalars.update(curve_summary(curves))
        roc_pr_png(curves, layout.roc_pr_png)
    else:
        placeholder_png(
            layout.roc_pr_png, f"ROC/PR drawn for <= {cfg.roc_max_classes} classes (evaluate.roc_max_classes)"
        )
    scalars.update(_robustness(cfg, clf, images, labels, layout))
    _gradcam(cfg, clf, images, y, pred, layout)
    if cfg.latency:
        scalars.update(latency.measure(clf.backbone, layout.model, images, clf.device, runs=cfg.latency_runs))
    metrics = {f"test_{k}": v for k, v in scalars.items()}
    write_json(layout.eval_metrics, metrics)
    write_text(layout.class_report, report.to_csv(index=False))
    write_text(layout.class_report.with_suffix(".md"), report.to_markdown(index=False, floatfmt=".4f") + "\n")
    write_text(
        layout.predictions,
        pd.DataFrame(
            {
                "actual": [clf.classes[i] for i in y],
                "predicted": [clf.classes[i] for i in pred],
                "confidence": probs.max(axis=1).round(6) if len(y) else [],
            }
        ).to_csv(index=False),
    )
    confusion_matrix_png(cm, clf.classes, layout.confusion_png)
    _drift_reference(clf, layout, cfg.seed)
    extra = f"  ECE {metrics['test_ece']:.4f} (T={cal['temperature']:.2f})"
    if "test_robust_accuracy" in metrics:
        extra += f"  robust {metrics['test_robust_accuracy']:.4f}"
    print(f"test accuracy {metrics['test_accuracy']:.4f}  macro-F1 {metrics['test_macro_f1']:.4f}{extra}  (n={len(y)})")
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("evaluate", argv, lambda p, layout: run(p.evaluate, p.train.device, layout))


if __name__ == "__main__":
    sys.exit(main())
