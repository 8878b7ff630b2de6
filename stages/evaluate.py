"""Stage `evaluate`: score the trained model on the held-out test split.

Writes `metrics.json` (DVC metrics, `test_*` keys), the per-class report (CSV + markdown),
`predictions.csv` (a DVC confusion plot) and a confusion-matrix PNG.
"""

from __future__ import annotations

import sys
from typing import Sequence

import pandas as pd

from stages.cli import stage_main
from vistune.classifier import Classifier
from vistune.config import EvaluateCfg, TrainCfg
from vistune.data import load_prepared
from vistune.io import write_json, write_text
from vistune.layout import Layout
from vistune.metrics import summarize
from vistune.plots import confusion_matrix_png


def run(cfg: EvaluateCfg, device: str, layout: Layout) -> dict[str, float]:
    clf = Classifier.load(layout.model, device=device)
    data = load_prepared(layout.prepared, splits=("test",))
    images, labels = data.tensors("test")
    probs = clf.logits(images, batch_size=cfg.batch_size).softmax(dim=1)
    pred = probs.argmax(dim=1).numpy()
    y = labels.numpy()
    scalars, report, cm = summarize(y, pred, clf.classes)
    metrics = {f"test_{k}": v for k, v in scalars.items()}
    layout.eval_dir.mkdir(parents=True, exist_ok=True)
    write_json(layout.eval_metrics, metrics)
    write_text(layout.class_report, report.to_csv(index=False))
    write_text(layout.class_report.with_suffix(".md"), report.to_markdown(index=False, floatfmt=".4f") + "\n")
    write_text(layout.predictions, pd.DataFrame({
        "actual": [clf.classes[i] for i in y], "predicted": [clf.classes[i] for i in pred],
        "confidence": probs.max(dim=1).values.numpy().round(6),
    }).to_csv(index=False))
    confusion_matrix_png(cm, clf.classes, layout.confusion_png)
    print(f"test accuracy {metrics['test_accuracy']:.4f}  macro-F1 {metrics['test_macro_f1']:.4f}  (n={len(y)})")
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("evaluate", argv, lambda p, layout: run(p.evaluate, p.train.device, layout))


if __name__ == "__main__":
    sys.exit(main())
