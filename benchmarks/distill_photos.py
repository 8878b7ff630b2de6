"""Distillation on photos: the `vistune init` teacher against a cheaper pretrained student, on hymenoptera.

The data is prepared exactly as the pipeline prepares it: `vistune init --minutes M`'s recipe
(`vistune.recipe.make_recipe` over `inspect_source`) fills the params, then the `ingest`, `validate`
and `augment` stages run as functions in a work folder (same split by `data.seed`, same quarantine,
same squash decode). The teacher trains with the recipe's settings through the core `fit` (as
`stages/train.py` does); the student is distilled from it with the core `distill` (as
`stages/compress.py` does). Both are saved as vistune model files and measured the same way on the
held-out test split: accuracy, macro-F1, parameters, file size, CPU latency (batch 1 and 32, the
compress stage's `report_torch`).

    nice -n 10 .venv/bin/python benchmarks/distill_photos.py --name lite0_full \\
        --student timm:tf_efficientnet_lite0 --student-pretrained imagenet --strategy full --epochs 8 --lr 1e-3

The prepared data and the trained teacher are kept in `--workdir` and reused by later runs with the
same recipe (only the student's settings change between runs). JSON: benchmarks/results/distill_photos_<name>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import write_result  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
HYMENOPTERA = REPO.parent / "shared" / "datasets" / "hymenoptera"


def recipe_params(source: Path, minutes: float | None, params_path: Path):
    """Params as `vistune init SOURCE --minutes M` writes them on this machine (CPU, torch's threads)."""
    from vistune.config import load_params, parse_params, to_dict
    from vistune.data.inspect import inspect_source
    from vistune.models.backbones import list_backbones
    from vistune.recipe import DeviceFacts, make_recipe

    current = load_params(params_path)
    profile = inspect_source(dataclasses.replace(current.data, source=str(source)), current.validate)
    device = DeviceFacts("cpu", f"this CPU ({torch.get_num_threads()} threads)", torch.get_num_threads())
    recipe = make_recipe(profile, device, list_backbones(), str(source), current, minutes)
    raw = to_dict(current)
    for s in recipe.settings:
        section, key = s.key.split(".")
        raw[section][key] = list(s.value) if isinstance(s.value, tuple) else s.value
    raw["train"]["device"] = "cpu"
    return parse_params(raw), recipe


def prepare(params, layout) -> float:
    """ingest -> validate -> augment, the pipeline's own stages, once per recipe."""
    from stages import augment, ingest, validate

    if (layout.prepared / "meta.json").is_file():
        return 0.0
    t0 = time.perf_counter()
    ingest.run(params.data, layout)
    validate.run(params.validate, layout)
    augment.run(params.augment, layout)
    return time.perf_counter() - t0


def teacher(params, data, path: Path):
    """Train the recipe's model with the core `fit` (best-val epoch kept, as `train` saves it); reuse the
    file when it is already there."""
    from vistune.config import to_dict
    from vistune.models.backbones import create_backbone
    from vistune.models.classifier import Classifier, save_model
    from vistune.train.finetune import create_strategy
    from vistune.train.loop import fit, set_seed

    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file():
        return Classifier.load(path).backbone, json.loads(meta.read_text())
    cfg = params.train
    set_seed(cfg.seed)
    backbone = create_backbone(
        cfg.model,
        len(data.classes),
        cfg.pretrained,
        drop_rate=cfg.drop_rate,
        drop_path_rate=cfg.drop_path_rate,
        pretrained_sha256=cfg.pretrained_sha256,
    )
    t0 = time.perf_counter()
    result = fit(
        backbone, create_strategy(cfg.strategy, cfg), data, cfg, params.augment, checkpoint=None, progress=True
    )
    info = {
        "train_s": time.perf_counter() - t0,
        "best_epoch": result.best_epoch,
        "best_val_accuracy": result.best_val_accuracy,
        "history": result.history,
    }
    save_model(
        path,
        backbone,
        result.state_dict,
        data.classes,
        data.image_size,
        extra={"train": to_dict(cfg), "augment": to_dict(params.augment), "best_epoch": result.best_epoch},
    )
    meta.write_text(json.dumps(info, indent=2) + "\n")
    return Classifier.load(path).backbone, info


def student(args, params, teacher_backbone, data, path: Path):
    """The student distilled from the teacher with the core `distill` on the recipe's augmentation."""
    from vistune.models.backbones import create_backbone
    from vistune.models.classifier import Classifier, save_model
    from vistune.train.distill import distill

    torch.manual_seed(args.seed)
    backbone = create_backbone(args.student, len(data.classes), args.student_pretrained)
    t0 = time.perf_counter()
    losses = distill(
        teacher_backbone,
        backbone,
        data,
        params.augment,
        args.epochs,
        args.lr,
        args.batch_size or params.train.batch_size,
        args.temperature,
        args.alpha,
        args.seed,
        strategy=args.strategy,
        unfreeze_blocks=args.unfreeze_blocks,
    )
    seconds = time.perf_counter() - t0
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.model.state_dict().items()}
    save_model(path, backbone, state, data.classes, data.image_size, extra={"variant": "distilled"})
    return Classifier.load(path).backbone, {"distill_s": seconds, "losses": losses}


def measure(name: str, backbone, path: Path, data, runs: int, parent=None):
    """Held-out test accuracy / macro-F1, parameters, file size and CPU latency (the compress stage's
    `report_torch`; `parent` given: the batch-1 speedup over it, timed in alternation)."""
    from vistune.evaluate.metrics import summarize
    from vistune.evaluate import variants as vc
    from vistune.models.device_policy import predict_logits

    x, y = data.tensors("test")
    pred = predict_logits(backbone, x, torch.device("cpu")).argmax(1).numpy()
    metrics, _, cm = summarize(y.numpy(), pred, data.classes)
    rep = vc.report_torch(name, backbone, path, x, y, runs, parent=parent)
    return rep, {
        "model": backbone.spec,
        "test_accuracy": metrics["accuracy"],
        "test_macro_f1": metrics["macro_f1"],
        "n_test": metrics["n"],
        "errors": int((pred != y.numpy()).sum()),
        "confusion": cm.tolist(),
        "params": sum(p.numel() for p in backbone.model.parameters()),
        "size_mb": rep.size_mb,
        "gzip_mb": rep.gzip_mb,
        "p50_ms": rep.p50_ms,
        "p95_ms": rep.p95_ms,
        "p50_b32_ms": rep.p50_b32_ms,
        "p95_b32_ms": rep.p95_b32_ms,
        "images_per_s": rep.images_per_s,
        "speedup_b1": rep.speedup_b1,
    }


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=HYMENOPTERA)
    p.add_argument("--minutes", type=float, default=15.0, help="vistune init --minutes (the teacher's recipe)")
    p.add_argument("--params", type=Path, default=REPO / "params.yaml", help="the params init starts from")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/vistune-distill-photos"))
    p.add_argument("--student", default="timm:tf_efficientnet_lite0")
    p.add_argument("--student-pretrained", default="imagenet")
    p.add_argument("--strategy", default="full", help="what the student trains (a train.strategy name)")
    p.add_argument("--unfreeze-blocks", type=int, default=2, help="--strategy partial")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=0, help="0 = the teacher's train.batch_size")
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--alpha", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = torch's default")
    p.add_argument("--latency-runs", type=int, default=20)
    p.add_argument("--name", default="lite0")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    from vistune.config import to_dict
    from vistune.data.prepared import load_prepared
    from vistune.layout import Layout

    load_before, started = os.getloadavg(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    params, recipe = recipe_params(args.data.resolve(), args.minutes, args.params)  # at torch's default threads
    if args.threads:
        torch.set_num_threads(args.threads)
    key = hashlib.sha256(
        json.dumps(
            {s: to_dict(getattr(params, s)) for s in ("data", "validate", "augment", "train")}, sort_keys=True
        ).encode()
    ).hexdigest()[:12]
    layout = Layout(args.workdir / key)
    layout.root.mkdir(parents=True, exist_ok=True)
    prepare_s = prepare(params, layout)
    data = load_prepared(layout.prepared)
    t_backbone, t_info = teacher(params, data, layout.root / "teacher.pt")
    s_path = layout.root / f"student_{args.name}.pt"
    s_backbone, s_info = student(args, params, t_backbone, data, s_path)
    from vistune.evaluate import variants as vc

    t_rep, t_row = measure("teacher", t_backbone, layout.root / "teacher.pt", data, args.latency_runs)
    s_rep, s_row = measure("student", s_backbone, s_path, data, args.latency_runs, vc.torch_predictor(t_backbone))
    rows = {"teacher": t_row, "student": s_row}
    gap = rows["teacher"]["test_accuracy"] - rows["student"]["test_accuracy"]
    cc = params.compress  # the compress stage's gate with the committed max_drop / max_slowdown
    gate = vc.variant_gate(s_rep, t_rep, cc.max_drop, cc.max_slowdown)
    result = {
        "started": started,
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_avg_before": [round(v, 2) for v in load_before],
        "load_avg_after": [round(v, 2) for v in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "data": str(args.data),
        "split": {s: len(data.splits[s]) for s in data.splits},
        "image_size": data.image_size,
        "recipe": {s.key: s.value for s in recipe.settings},
        "recipe_minutes": args.minutes,
        "prepare_s": prepare_s,
        "teacher_train": t_info,
        "student_settings": {k: v for k, v in vars(args).items() if k not in ("data", "params", "workdir")}
        | {"batch_size": args.batch_size or params.train.batch_size, "augment": "the teacher's (recipe) augment"},
        "student_train": s_info,
        "rows": rows,
        "accuracy_gap_points": round(100 * gap, 2),
        "stage_gate": {"max_drop": cc.max_drop, "max_slowdown": cc.max_slowdown, "passed": not gate, "reason": gate},
    }
    for who, r in rows.items():
        print(
            f"{who:8s} {r['model']:32s} test acc {r['test_accuracy']:.4f} ({r['errors']}/{r['n_test']} wrong) "
            f"macro-F1 {r['test_macro_f1']:.4f}  {r['params'] / 1e6:.2f} M params  {r['size_mb']:.2f} MB  "
            f"p50 {r['p50_ms']:.1f} ms (b1) {r['p50_b32_ms']:.0f} ms (b32)  {r['images_per_s']:.1f} img/s"
        )
    print(
        f"gap {100 * gap:+.2f} points (teacher - student); student {s_rep.speedup_b1:.2f}x faster at batch 1 "
        f"(alternating); distill {s_info['distill_s']:.0f} s; stage gate: {gate or 'pass'}"
    )
    write_result(REPO / "benchmarks" / "results" / f"distill_photos_{args.name}.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
