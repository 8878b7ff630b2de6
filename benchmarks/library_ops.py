"""Hand-written op or the library already in the tree? Measures each pair vistune kept or replaced.

Replaced (results must agree): McNemar p-values (scipy binomtest / chi2 vs the old closed forms, passed
as --old-significance), ROC/PR curves (scikit-learn, checked bit for bit against the old numpy code,
--old-metrics), the EMA update (timm ModelEmaV3 vs the old foreach lerp, --old-ema). Kept (the reason must hold): warmup+cosine vs timm CosineLRScheduler (per-step lr),
mixup/cutmix vs timm Mixup (odd batch, RNG), bootstrap macro-F1 rows vs one sklearn f1_score per resample.

    python benchmarks/library_ops.py [--old-significance FILE --old-metrics FILE --old-ema FILE] [--out JSON]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import write_result
from vistune.evaluate import significance as sig
from vistune.evaluate.metrics import binary_curves
from vistune.train.mix import mix_batch
from vistune.train.schedule import WarmupCosine


def _load(path: str | None, name: str):
    if not path:
        return None
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def schedule() -> dict:
    """Per-step lr of WarmupCosine vs timm's CosineLRScheduler set up for the same run (lr 3e-3, 12 of 60)."""
    from timm.scheduler import CosineLRScheduler

    base, low, warm, total = 3e-3, 1e-5, 12, 60
    ours = WarmupCosine(base, low, warm, total)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=base)
    timm_s = CosineLRScheduler(
        opt,
        t_initial=total - warm,
        lr_min=low,
        warmup_t=warm,
        warmup_lr_init=base / warm,
        warmup_prefix=True,
        t_in_epochs=False,
    )
    a = np.array([ours.lr_at(t) for t in range(total)])
    b = np.array([timm_s._get_lr(t)[0] for t in range(total)])
    diff = np.abs(a - b) / base
    return {
        "steps": total,
        "warmup": warm,
        "first_lr_ours": a[0],
        "first_lr_timm": b[0],
        "steps_differing": int((diff > 1e-12).sum()),
        "max_rel_diff_warmup": float(diff[:warm].max()),
        "max_rel_diff_after": float(diff[warm:].max()),
    }


def mixup() -> dict:
    """timm Mixup on an odd last batch and its RNG; both ops timed on a 64x3x224x224 CPU batch."""
    from timm.data import Mixup

    mix = Mixup(mixup_alpha=0.2, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=10)
    x, y = torch.rand(7, 3, 32, 32), torch.arange(7) % 10
    try:
        mix(x, y)
        odd = "ok"
    except AssertionError as exc:
        odd = f"AssertionError: {exc}"
    np.random.seed(0)
    torch.manual_seed(0)
    x2 = torch.rand(8, 3, 32, 32)
    first = mix(x2.clone(), torch.arange(8))[1]
    torch.manual_seed(0)  # the training generator reseeded: timm still draws from numpy's global state
    second = mix(x2.clone(), torch.arange(8))[1]
    xb, yb = torch.rand(64, 3, 224, 224), torch.arange(64) % 10
    soft = torch.nn.functional.one_hot(yb, 10).float()
    g = torch.Generator().manual_seed(0)
    times = {}
    for name, fn in (("ours", lambda: mix_batch(xb, soft, 0.2, 1.0, g)), ("timm", lambda: mix(xb.clone(), yb))):
        t0 = time.perf_counter()
        for _ in range(20):
            fn()
        times[name] = (time.perf_counter() - t0) / 20 * 1e3
    return {
        "timm_odd_batch_of_7": odd,
        "timm_same_torch_seed_same_targets": bool(torch.equal(first, second)),
        "ms_per_batch_64x224_ours": round(times["ours"], 2),
        "ms_per_batch_64x224_timm": round(times["timm"], 2),
    }


def bootstrap() -> dict:
    """1,000 paired resamples of a 269-image 10-class test set: vectorized rows vs sklearn per resample."""
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 269)
    pred = np.where(rng.random(269) < 0.9, y, rng.integers(0, 10, 269))
    idx = rng.integers(0, 269, size=(1000, 269))
    t0 = time.perf_counter()
    rows = sig.macro_f1_rows(y[idx], pred[idx], 10)
    t_rows = time.perf_counter() - t0
    t0 = time.perf_counter()
    sk = np.array([f1_score(y[i], pred[i], labels=np.unique(y[i]), average="macro", zero_division=0) for i in idx])
    t_sk = time.perf_counter() - t0
    return {
        "resamples": 1000,
        "s_vectorized_rows": round(t_rows, 4),
        "s_sklearn_per_resample": round(t_sk, 3),
        "speedup": round(t_sk / t_rows, 1),
        "max_abs_diff": float(np.abs(rows - sk).max()),
    }


def replaced(old_sig, old_metrics, old_ema) -> dict:
    out: dict = {}
    if old_ema is not None:
        import timm

        from vistune.train.ema import ModelEma

        torch.manual_seed(0)
        model = timm.create_model("resnet10t", num_classes=3, pretrained=False)
        new, old = ModelEma(model, 0.99), old_ema.ModelEma(model, 0.99)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(5):
            opt.zero_grad()
            model(torch.randn(4, 3, 32, 32)).sum().backward()
            opt.step()
            new.update(model)
            old.update(model)
        a, b = new.module.state_dict(), old.module.state_dict()
        out["ema_tensors"], out["ema_bitwise_equal"] = len(a), sum(torch.equal(a[k], b[k]) for k in a)
    if old_sig is not None:
        diffs = []
        for n in range(1, 60):
            for gained in range(n + 1):
                a = np.r_[np.zeros(gained, bool), np.ones(n - gained, bool)]
                new, old = sig.mcnemar(a, ~a), old_sig.mcnemar(a, ~a)
                diffs.append(abs(new.p_value - old.p_value))
        out["mcnemar_cases"], out["mcnemar_max_abs_p_diff"] = len(diffs), float(max(diffs))
    if old_metrics is not None:
        rng = np.random.default_rng(0)
        same, ap_diff = 0, 0.0
        for _ in range(50):
            s, p = np.round(rng.random(300), 2), rng.random(300) < 0.3
            new, old = binary_curves(s, p), old_metrics.binary_curves(s, p)
            same += all(np.array_equal(new[k], old[k]) for k in ("fpr", "tpr", "recall"))
            ap_diff = max(ap_diff, abs(new["ap"] - old["ap"]), abs(new["roc_auc"] - old["roc_auc"]))
        out["curves_bitwise_equal_of_50"], out["curves_max_auc_ap_diff"] = same, ap_diff
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-significance")
    ap.add_argument("--old-metrics")
    ap.add_argument("--old-ema")
    ap.add_argument("--out", default="benchmarks/results/library_ops.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    result = {
        "schedule": schedule(),
        "mixup": mixup(),
        "bootstrap": bootstrap(),
        "replaced": replaced(
            _load(args.old_significance, "old_sig"),
            _load(args.old_metrics, "old_metrics"),
            _load(args.old_ema, "old_ema"),
        ),
    }
    for section, figures in result.items():
        print(section, figures)
    write_result(Path(args.out), result)


if __name__ == "__main__":
    main()
