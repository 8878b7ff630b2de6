"""Champion and challenger re-scored on the same test split, and the paired tests that compare them.

Both models predict the DVC-pinned `data/prepared/test_*.npy` of this run; the paired tests of
`vistune.evaluate.significance` then give the promotion gate its evidence (metric deltas with bootstrap
CIs, McNemar, per-class F1 deltas, the images the challenger newly gets wrong). Rendering the evidence
is `app.gate_report`'s job; fetching the champion's weights is `integrations.weights`'.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vistune.config import RegisterCfg
from vistune.evaluate import significance as sig
from vistune.models.classifier import Classifier

GATE_METRICS = {"test_accuracy": "accuracy", "test_macro_f1": "macro_f1"}
SEED = 0


@dataclass
class EvalSet:
    images: torch.Tensor  # uint8 N x 3 x S x S
    labels: np.ndarray
    classes: list[str]
    names: list[str]  # one per image (manifest path), for "newly wrong" lists


@dataclass
class PairedEvidence:
    """What the paired tests found for one champion/challenger pair."""

    passed: bool | None  # None: the test is not required (gate_test none, or a negative margin)
    why: str
    finding: str  # the verdict: better / worse / no significant difference
    p_value: float | None
    champion_value: float | None  # of the gate metric, when it can be re-scored
    challenger_value: float | None
    mcnemar: sig.McNemarResult
    tables: dict[str, pd.DataFrame]  # metrics, mcnemar, per_class, newly_wrong


def predict(model_file: Path, data: EvalSet, batch_size: int = 256) -> np.ndarray:
    """Class indices (in `data.classes` order) a saved model predicts for the eval set."""
    clf = Classifier.load(model_file, device="cpu")
    unknown = sorted(set(clf.classes) - set(data.classes))
    if unknown:
        raise ValueError(f"model predicts classes this test split lacks: {unknown[:5]}")
    images = data.images
    if images.shape[-1] != clf.image_size:  # champion trained at another augment.image_size
        images = torch.nn.functional.interpolate(
            images.float(), size=(clf.image_size, clf.image_size), mode="bilinear", antialias=True, align_corners=False
        )
        images = images.round().clamp(0, 255).to(torch.uint8)
    pred = clf.logits(images, batch_size=batch_size).argmax(dim=1).numpy()
    remap = np.array([data.classes.index(c) for c in clf.classes])
    return remap[pred] if len(pred) else pred.astype(np.int64)


def paired_evidence(data: EvalSet, champ_pred: np.ndarray, chal_pred: np.ndarray, cfg: RegisterCfg) -> PairedEvidence:
    """The paired tests of `cfg.gate_test` on two sets of predictions of the same images."""
    y, k = data.labels, len(data.classes)
    mc = sig.mcnemar(champ_pred == y, chal_pred == y)
    confidence = 1.0 - cfg.gate_alpha
    boots = {
        m: sig.paired_bootstrap(y, champ_pred, chal_pred, m, k, cfg.gate_n_boot, confidence, SEED) for m in sig.METRICS
    }
    values = {
        m: (float(sig.METRICS[m](y, champ_pred, k)[0]), float(sig.METRICS[m](y, chal_pred, k)[0])) for m in sig.METRICS
    }
    metric = GATE_METRICS.get(cfg.gate_metric)
    required = cfg.gate_test != "none" and cfg.min_improvement >= 0  # a negative margin waives the test
    ok, why = sig.is_significant(cfg.gate_test, cfg.gate_alpha, mc, boots[metric or "accuracy"])
    if cfg.gate_test != "none" and not required:
        why += " (not required: register.min_improvement < 0)"
    if cfg.gate_test == "bootstrap" and metric is None:
        why += f" (on accuracy: {cfg.gate_metric} cannot be re-scored)"
    finding = sig.verdict(cfg.gate_test, cfg.gate_alpha, mc, boots[metric or "accuracy"])
    p_value = {"mcnemar": mc.p_value, "bootstrap": boots[metric or "accuracy"].p_value}.get(cfg.gate_test)
    metrics = pd.DataFrame(
        [
            {
                "metric": m,
                "champion": values[m][0],
                "challenger": values[m][1],
                "delta": b.delta,
                "ci_low": b.low,
                "ci_high": b.high,
                "confidence": b.confidence,
                "p_not_better": b.p_value,
                "n_boot": b.n_boot,
            }
            for m, b in boots.items()
        ]
    )
    mcn = pd.DataFrame([{"test": "mcnemar", **mc.as_dict(), "alpha": cfg.gate_alpha, "n": len(y)}])
    f1a, f1b = sig.per_class_f1(y, champ_pred, k), sig.per_class_f1(y, chal_pred, k)
    per_class = pd.DataFrame(
        {
            "class": data.classes,
            "support": np.bincount(y, minlength=k)[:k],
            "champion_f1": f1a,
            "challenger_f1": f1b,
            "delta": f1b - f1a,
        }
    )
    lost = np.flatnonzero((champ_pred == y) & (chal_pred != y))
    newly_wrong = pd.DataFrame(
        {
            "index": lost,
            "image": [data.names[i] for i in lost],
            "actual": [data.classes[y[i]] for i in lost],
            "challenger_predicted": [data.classes[chal_pred[i]] for i in lost],
        }
    )
    return PairedEvidence(
        ok if required else None,
        why,
        finding,
        p_value,
        values[metric][0] if metric else None,
        values[metric][1] if metric else None,
        mc,
        {"metrics": metrics, "mcnemar": mcn, "per_class": per_class, "newly_wrong": newly_wrong},
    )


def load_eval_set(layout) -> EvalSet:
    """This run's prepared test split, with each image's manifest path as its name."""
    from vistune.data.prepared import load_prepared

    data = load_prepared(layout.prepared, splits=("test",))
    images, labels = data.tensors("test")
    names = [f"test[{i}]" for i in range(len(labels))]
    if layout.manifest.is_file():
        manifest = pd.read_csv(layout.manifest, dtype={"label": str})
        paths = list(manifest[manifest.split == "test"].path)
        if len(paths) == len(labels):
            names = paths
    return EvalSet(images, labels.numpy(), data.classes, names)
