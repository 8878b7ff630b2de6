"""Stage `compress` (optional, `compress.enabled`): smaller variants of the trained model.

Builds ONNX (checked against torch), static int8 ONNX (every conv, calibrated on a seeded choice
of train images listed in data/compress/calibration.csv), optionally the older dynamic int8,
magnitude-pruned + fine-tuned, and distilled variants, and measures each on the test split:
accuracy, file size (raw and gzip), p50/p95 latency at batch 1 and 32, images/s on CPU. Each
variant is gated against the fp32 model (`vistune.evaluate.variants.variant_gate`: accuracy drop <=
compress.max_drop on the same test split, not slower, smaller or faster; speed from `speedup_b1`,
the fp32 model re-timed in alternation with each variant so both see the same load on a shared
CPU); the report's `gate` column says which ones
`register` registers as sibling model versions. Writes data/compress/report.csv + metrics.json
(DVC metrics) and the variant files under data/compress/models/.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from typing import Sequence

import pandas as pd
import torch

from stages.cli import stage_main
from vistune.evaluate import variants as vc
from vistune.models import onnx_export, quantize
from vistune.models.prune import magnitude_prune, make_permanent
from vistune.models.backbones import create_backbone
from vistune.models.classifier import Classifier, save_model
from vistune.config import CompressCfg, Params
from vistune.data.prepared import load_prepared
from vistune.train.finetune import create_strategy
from vistune.io import write_json, write_text
from vistune.layout import Layout
from vistune.train.distill import distill
from vistune.train.loop import fit
from vistune.models.device_policy import predict_logits


def _plain(backbone) -> dict:
    """The network's weights in NCHW layout (they train channels_last), as `train` saves them."""
    return {k: v.detach().cpu().contiguous() for k, v in backbone.model.state_dict().items()}


def _pruned(
    cfg: CompressCfg, params: Params, clf: Classifier, data, layout: Layout, parent: vc.Predict
) -> vc.VariantReport:
    backbone = vc.clone_backbone(clf.backbone)
    magnitude_prune(backbone.model, cfg.prune_amount)
    if cfg.finetune_epochs > 0:
        tune = dataclasses.replace(
            params.train,
            epochs=cfg.finetune_epochs,
            lr=params.train.lr * 0.1,
            warmup_epochs=0.0,
            patience=0,
            device="cpu",
            strategy="full",
            model_ema=False,
        )
        fit(backbone, create_strategy("full"), data, tune, params.augment, checkpoint=None, progress=False)
    make_permanent(backbone.model)
    path = layout.compress_models / "pruned.pt"
    save_model(
        path,
        backbone,
        _plain(backbone),
        clf.classes,
        clf.image_size,
        extra={"variant": "pruned", "prune_amount": cfg.prune_amount},
    )
    x, y = data.tensors("test")
    return vc.report_torch("pruned", backbone, path, x, y, cfg.latency_runs, parent=parent)


def _distilled(
    cfg: CompressCfg, params: Params, clf: Classifier, data, layout: Layout, parent: vc.Predict
) -> vc.VariantReport:
    student = create_backbone(
        cfg.student,
        len(clf.classes),
        cfg.student_pretrained,
        pretrained_sha256=cfg.student_pretrained_sha256,
        sha256_setting="compress.student_pretrained_sha256",
    )
    distill(
        clf.backbone,
        student,
        data,
        params.augment,
        cfg.distill_epochs,
        cfg.distill_lr,
        params.train.batch_size,
        cfg.distill_temperature,
        cfg.distill_alpha,
        cfg.seed,
        strategy=cfg.distill_strategy,
        unfreeze_blocks=cfg.distill_unfreeze_blocks,
    )
    path = layout.compress_models / "distilled.pt"
    save_model(
        path,
        student,
        _plain(student),
        clf.classes,
        clf.image_size,
        extra={"variant": "distilled", "teacher": clf.backbone.spec},
    )
    x, y = data.tensors("test")
    return vc.report_torch("distilled", student, path, x, y, cfg.latency_runs, parent=parent)


REPORT_COLUMNS = [f.name for f in dataclasses.fields(vc.VariantReport)] + ["gate", "gate_reason"]


def _calibration(cfg: CompressCfg, data, layout: Layout):
    """The seeded choice of train images that fixes int8 activation ranges, recorded for DVC."""
    x, y = data.tensors("train")
    rows = quantize.calibration_indices(len(y), cfg.calibration_images, cfg.seed)
    paths = [""] * len(rows)
    if layout.manifest.is_file():  # prepared train rows are the manifest's train rows, in order
        manifest = pd.read_csv(layout.manifest, usecols=["path", "split"])
        train_paths = list(manifest[manifest.split == "train"].path)
        paths = [train_paths[i] for i in rows] if len(train_paths) == len(y) else paths
    write_text(
        layout.compress_dir / "calibration.csv",
        pd.DataFrame({"train_row": rows, "label": y.numpy()[rows], "path": paths}).to_csv(index=False),
    )
    return x.numpy()[rows]


def _onnx_variants(
    cfg: CompressCfg, clf: Classifier, data, layout: Layout, reference, parent: vc.Predict
) -> list[vc.VariantReport]:
    wanted = [v for v in ("onnx", "onnx_int8", "onnx_int8_dynamic") if v in cfg.variants]
    if not wanted:
        return []
    x, y = data.tensors("test")
    models = layout.compress_models
    onnx_export.export_onnx(clf.backbone, clf.image_size, models / "model.onnx", classes=clf.classes)
    if "onnx_int8" in wanted:
        quantize.quantize_static_int8(
            models / "model.onnx",
            models / "model_int8.onnx",
            _calibration(cfg, data, layout),
            method=cfg.calibration_method,
        )
    if "onnx_int8_dynamic" in wanted:
        quantize.quantize_dynamic_int8(models / "model.onnx", models / "model_int8_dynamic.onnx")
    files = {"onnx": "model.onnx", "onnx_int8": "model_int8.onnx", "onnx_int8_dynamic": "model_int8_dynamic.onnx"}
    reports = []
    for name in wanted:
        onnx_export.set_metadata(models / files[name], clf.classes, clf.image_size)  # quantizers drop it
        reports.append(
            vc.report_onnx(name, models / files[name], clf.backbone, x, y, reference, cfg.latency_runs, parent=parent)
        )
    if "onnx" not in wanted:
        (models / "model.onnx").unlink()
    return reports


def _table(cfg: CompressCfg, reports: list[vc.VariantReport], layout: Layout) -> pd.DataFrame:
    parent, rows = reports[0], []
    for r in reports:
        why = "" if r is parent else vc.variant_gate(r, parent, cfg.max_drop, cfg.max_slowdown)
        rows.append(
            {
                **dataclasses.asdict(r),
                "gate": "parent" if r is parent else ("fail" if why else "pass"),
                "gate_reason": why,
            }
        )
    table = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    table["file"] = [str(layout.compress_models.name + "/" + p.rsplit("/", 1)[-1]) if p else "" for p in table.file]
    return table


def run(params: Params, layout: Layout) -> pd.DataFrame:
    cfg = params.compress
    if layout.compress_models.exists():
        shutil.rmtree(layout.compress_models)
    layout.compress_models.mkdir(parents=True)
    if not cfg.enabled:
        write_text(layout.compress_report, ",".join(REPORT_COLUMNS) + "\n")
        write_text(layout.compress_dir / "calibration.csv", "train_row,label,path\n")
        write_json(layout.compress_metrics, {"compress_enabled": False})
        print("compress.enabled is false: nothing to build (set it to true in params.yaml)")
        return pd.DataFrame()
    torch.manual_seed(cfg.seed)
    clf = Classifier.load(layout.model, device="cpu")
    data = load_prepared(layout.prepared)
    x, y = data.tensors("test")
    reports = [vc.report_torch("fp32", clf.backbone, layout.model, x, y, cfg.latency_runs)]
    reference = predict_logits(clf.backbone, x, torch.device("cpu"))
    parent = vc.torch_predictor(clf.backbone)  # re-timed beside each variant: the gate's speed comparison
    reports += _onnx_variants(cfg, clf, data, layout, reference, parent)
    if "onnx_int8" not in cfg.variants:
        write_text(layout.compress_dir / "calibration.csv", "train_row,label,path\n")
    if "pruned" in cfg.variants:
        reports.append(_pruned(cfg, params, clf, data, layout, parent))
    if "distilled" in cfg.variants:
        reports.append(_distilled(cfg, params, clf, data, layout, parent))
    table = _table(cfg, reports, layout)
    write_text(layout.compress_report, table.round(6).to_csv(index=False))
    keys = ("accuracy", "size_mb", "p50_ms", "p50_b32_ms", "images_per_s")
    write_json(
        layout.compress_metrics,
        {
            "compress_enabled": True,
            **{f"{r.variant}_{k}": float(getattr(r, k)) for r in reports for k in keys},
            **{f"{v}_gate_passed": int(g == "pass") for v, g in zip(table.variant, table.gate) if g != "parent"},
        },
    )
    print(table.drop(columns=["file", "gate_reason"]).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for v, why in zip(table.variant, table.gate_reason):
        if why:
            print(f"{v}: not registered: {why}")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("compress", argv, run)


if __name__ == "__main__":
    sys.exit(main())
