"""Stage `compress` (optional, `compress.enabled`): smaller variants of the trained model.

Builds ONNX (checked against torch), ONNX int8, magnitude-pruned + fine-tuned, and distilled
variants, and measures each on the test split: accuracy, file size (raw and gzip), p50/p95
single-image latency on CPU. Writes data/compress/report.csv + metrics.json (DVC metrics) and
the variant files under data/compress/models/ (logged to MLflow by `register`).
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from typing import Sequence

import pandas as pd
import torch

from stages.cli import stage_main
from vistune.models import compress as vc
from vistune.models.backbones import create_backbone
from vistune.models.classifier import Classifier, save_model
from vistune.config import CompressCfg, Params
from vistune.data.prepared import load_prepared
from vistune.train.finetune import create_strategy
from vistune.io import write_json, write_text
from vistune.layout import Layout
from vistune.train.loop import fit
from vistune.models.inference import predict_logits


def _plain(backbone) -> dict:
    """The network's weights in NCHW layout (they train channels_last), as `train` saves them."""
    return {k: v.detach().cpu().contiguous() for k, v in backbone.model.state_dict().items()}


def _pruned(cfg: CompressCfg, params: Params, clf: Classifier, data, layout: Layout) -> vc.VariantReport:
    backbone = vc.clone_backbone(clf.backbone)
    vc.magnitude_prune(backbone.model, cfg.prune_amount)
    if cfg.finetune_epochs > 0:
        tune = dataclasses.replace(params.train, epochs=cfg.finetune_epochs, lr=params.train.lr * 0.1, warmup_epochs=0.0,
                                   patience=0, device="cpu", strategy="full", model_ema=False)
        fit(backbone, create_strategy("full"), data, tune, params.augment, checkpoint=None, progress=False)
    vc.make_permanent(backbone.model)
    path = layout.compress_models / "pruned.pt"
    save_model(path, backbone, _plain(backbone), clf.classes, clf.image_size,
               extra={"variant": "pruned", "prune_amount": cfg.prune_amount})
    x, y = data.tensors("test")
    return vc.report_torch("pruned", backbone, path, x, y, cfg.latency_runs)


def _distilled(cfg: CompressCfg, params: Params, clf: Classifier, data, layout: Layout) -> vc.VariantReport:
    student = create_backbone(cfg.student, len(clf.classes), cfg.student_pretrained,
                              pretrained_sha256=cfg.student_pretrained_sha256,
                              sha256_setting="compress.student_pretrained_sha256")
    vc.distill(clf.backbone, student, data, params.augment, cfg.distill_epochs, cfg.distill_lr,
               params.train.batch_size, cfg.distill_temperature, cfg.distill_alpha, cfg.seed)
    path = layout.compress_models / "distilled.pt"
    save_model(path, student, _plain(student), clf.classes, clf.image_size,
               extra={"variant": "distilled", "teacher": clf.backbone.spec})
    x, y = data.tensors("test")
    return vc.report_torch("distilled", student, path, x, y, cfg.latency_runs)


def run(params: Params, layout: Layout) -> pd.DataFrame:
    cfg = params.compress
    if layout.compress_models.exists():
        shutil.rmtree(layout.compress_models)
    layout.compress_models.mkdir(parents=True)
    if not cfg.enabled:
        write_text(layout.compress_report, "variant,accuracy,size_mb,gzip_mb,p50_ms,p95_ms,sparsity,max_abs_diff,file\n")
        write_json(layout.compress_metrics, {"compress_enabled": False})
        print("compress.enabled is false: nothing to build (set it to true in params.yaml)")
        return pd.DataFrame()
    torch.manual_seed(cfg.seed)
    clf = Classifier.load(layout.model, device="cpu")
    data = load_prepared(layout.prepared)
    x, y = data.tensors("test")
    reports = [vc.report_torch("fp32", clf.backbone, layout.model, x, y, cfg.latency_runs)]
    reference = predict_logits(clf.backbone, x, torch.device("cpu"))
    onnx_path = layout.compress_models / "model.onnx"
    if {"onnx", "onnx_int8"} & set(cfg.variants):
        vc.export_onnx(clf.backbone, clf.image_size, onnx_path)
        if "onnx" in cfg.variants:
            reports.append(vc.report_onnx("onnx", onnx_path, clf.backbone, x, y, reference, cfg.latency_runs))
        if "onnx_int8" in cfg.variants:
            int8 = layout.compress_models / "model_int8.onnx"
            vc.quantize_int8(onnx_path, int8)
            reports.append(vc.report_onnx("onnx_int8", int8, clf.backbone, x, y, reference, cfg.latency_runs))
    if "pruned" in cfg.variants:
        reports.append(_pruned(cfg, params, clf, data, layout))
    if "distilled" in cfg.variants:
        reports.append(_distilled(cfg, params, clf, data, layout))
    table = pd.DataFrame([dataclasses.asdict(r) for r in reports])
    table["file"] = [str(layout.compress_models.name + "/" + p.rsplit("/", 1)[-1]) if p else "" for p in table.file]
    write_text(layout.compress_report, table.round(6).to_csv(index=False))
    write_json(layout.compress_metrics, {"compress_enabled": True, **{
        f"{r.variant}_{k}": float(getattr(r, k)) for r in reports for k in ("accuracy", "size_mb", "p50_ms")}})
    print(table.drop(columns=["file"]).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return table


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("compress", argv, run)


if __name__ == "__main__":
    sys.exit(main())
