"""Which backbone, input size and head LR for a frozen backbone on photos, chosen without the test split?

A linear probe keeps the ImageNet backbone as it was trained: on random-resized crops, where objects
fill more of the frame than in a whole photo squashed to the same size (the FixRes train/test
discrepancy). This measures it on a pipeline run's validated photos (`--run`: a repo where `validate`
ran, e.g. `benchmarks/accuracy.py --workdir`): every good image is decoded once and squashed
(`resize_rgb`, the pipeline's decode) to each size; then

- zero-shot: errors of the ImageNet rows named by the classes alone, per split (no training, so
  train+val is a fair set to choose the size on);
- probe: a head started at those rows, trained the way `fit` trains `linear_probe` (head_init.py's
  optimiser) on train features at one size, val/test errors by epoch at the same size;
- cv: the same head with fit's cosine schedule and a random flip per image, in repeated k-fold
  cross-validation on train+val (test untouched) at each `--cv-lrs`: held-out errors by epoch, summed
  over folds and repeats, as they are and with flip test-time augmentation (mirrored logits added).

    .venv/bin/python benchmarks/probe_size.py --run /tmp/acc --model timm:tf_efficientnet_lite2 --sizes 260 288 \
        --cv-lrs 1e-4 3e-4 1e-3 --features /tmp/features --out benchmarks/results/probe_size_lite2.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from head_init import errors, features_of, imagenet_head, train_head  # noqa: E402

from vistune.data.imageio import decode_file  # noqa: E402
from vistune.data.preprocess import resize_rgb  # noqa: E402
from vistune.models.imagenet_names import imagenet_rows  # noqa: E402

SPLITS = ("train", "val", "test")
REPORT_EPOCHS = (1, 2, 3, 5, 11)


def good_images(run: Path) -> tuple[list[str], dict[str, tuple[list[np.ndarray], np.ndarray]]]:
    """(classes, {split: (decoded RGB photos, labels)}) for the rows `validate` kept."""
    refused = {r["path"] for r in csv.DictReader((run / "data/validated/quarantine.csv").open())}
    rows = [r for r in csv.DictReader((run / "data/validated/manifest.csv").open()) if r["path"] not in refused]
    classes = sorted({r["label"] for r in rows})
    out = {}
    for split in SPLITS:
        mine = [r for r in rows if r["split"] == split]
        out[split] = (
            [decode_file(run / "data/raw" / r["path"]) for r in mine],
            np.array([classes.index(r["label"]) for r in mine]),
        )
    return classes, out


def at_size(photos: dict, classes: list[str], spec: str, size: int) -> dict[str, np.ndarray]:
    splits = {s: (np.stack([resize_rgb(p, size) for p in rgb]), y) for s, (rgb, y) in photos.items()}
    return features_of(splits, classes, spec)


def cached_features(folder: Path | None, photos: dict, classes: list[str], spec: str, size: int) -> dict:
    """`at_size`, kept as `<folder>/<backbone>_<size>.npz` when a folder is given: a rerun skips the forwards."""
    path = None if folder is None else folder / f"{spec.split(':')[-1]}_{size}.npz"
    if path is not None and path.is_file():
        return dict(np.load(path))
    z = at_size(photos, classes, spec, size)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **z)
    return z


def cosine_head_errors(
    head: torch.nn.Linear, z: dict, train: np.ndarray, held: np.ndarray, lr: float, epochs: int, seed: int
) -> np.ndarray:
    """Held-out (plain, flip-TTA) errors after 0..epochs epochs: AdamW + cosine to 0, batch 32, flip p=0.5."""
    g = torch.Generator().manual_seed(seed)
    clean, flip = torch.from_numpy(z["clean"][train]).float(), torch.from_numpy(z["flip"][train]).float()
    y = torch.from_numpy(z["y"][train]).long()
    x_held, x_mirror = (torch.from_numpy(z[key][held]).float() for key in ("clean", "flip"))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.05)
    steps, k = epochs * -(-len(y) // 32), 0

    def wrong() -> tuple[int, int]:
        """Errors on the held-out photos as they are, and with the mirrored photo's logits added (flip TTA)."""
        with torch.no_grad():
            logits = head(x_held)
            both = logits + head(x_mirror)
        return tuple(int((out.argmax(1).numpy() != z["y"][held]).sum()) for out in (logits, both))

    out = [wrong()]
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(32):
            mirrored = torch.rand(len(idx), generator=g) < 0.5
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + np.cos(np.pi * k / steps))
            k += 1
            loss = F.cross_entropy(
                head(torch.where(mirrored[:, None], flip[idx], clean[idx])), y[idx], label_smoothing=0.1
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        out.append(wrong())
    return np.array(out)


def cv_errors(
    z: dict, spec: str, rows: list[int], lr: float, epochs: int, folds: int, repeats: int
) -> dict[str, list[int]]:
    """Held-out errors by epoch in `repeats` x `folds`-fold CV over train+val, summed: plain and flip-TTA."""
    pool = {key: np.concatenate([z[f"train_{key}"], z[f"val_{key}"]]) for key in ("clean", "flip", "y")}
    total = np.zeros((epochs + 1, 2), dtype=int)
    for rep in range(repeats):
        fold = np.random.default_rng(rep).permutation(len(pool["y"])) % folds
        for f in range(folds):
            head = imagenet_head(spec, rows, pool["clean"].shape[1])
            total += cosine_head_errors(head, pool, fold != f, fold == f, lr, epochs, seed=rep)
    return {"plain": total[:, 0].tolist(), "flip_tta": total[:, 1].tolist()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="repo of a pipeline run (data/validated, data/raw)")
    p.add_argument("--model", default="timm:tf_efficientnet_lite0")
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 256, 288, 320])
    p.add_argument("--epochs", type=int, default=11)
    p.add_argument("--lr", type=float, default=1e-3, help="the probe's LR")
    p.add_argument("--cv-lrs", type=float, nargs="+", default=None, help="LRs cross-validated (default: --lr)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cv-folds", type=int, default=5)
    p.add_argument("--cv-repeats", type=int, default=3)
    p.add_argument("--features", type=Path, default=None, help="folder to cache features in (.npz per size)")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    classes, photos = good_images(a.run)
    rows, unmatched = imagenet_rows(classes)
    if rows is None:
        p.error(f"classes {unmatched} name no single ImageNet class")
    by_size = {}
    for size in a.sizes:
        t = time.perf_counter()
        z = cached_features(a.features, photos, classes, a.model, size)
        dim = z["train_clean"].shape[1]
        zero = {s: errors(imagenet_head(a.model, rows, dim), z, s) for s in SPLITS}
        torch.manual_seed(a.seed)
        probe = train_head(imagenet_head(a.model, rows, dim), z, a.lr, a.epochs, a.seed)
        cv = {
            f"{lr:g}": cv_errors(z, a.model, rows, lr, a.epochs, a.cv_folds, a.cv_repeats) for lr in a.cv_lrs or [a.lr]
        }
        by_size[size] = {
            "zero_shot_errors": zero,
            "probe_val_test_errors_by_epoch": probe,
            "cv_train_val_errors_by_epoch_per_lr": cv,
            "seconds": round(time.perf_counter() - t, 1),
        }
        shown = " ".join(f"ep{e} {probe[e][0]}/{probe[e][1]}" for e in REPORT_EPOCHS if e < len(probe))
        print(
            f"{size:4d} px  zero-shot errors train {zero['train']} val {zero['val']} test {zero['test']} "
            f"(train+val {zero['train'] + zero['val']})  probe val/test: {shown}",
            flush=True,
        )
        for lr, errs in cv.items():
            print(f"      cv lr {lr}: errors by epoch {errs['plain']}  with flip TTA {errs['flip_tta']}", flush=True)
    n = {s: int(len(photos[s][1])) for s in SPLITS}
    result = {
        "date": str(date.today()),
        "model": a.model,
        "classes": classes,
        "imagenet_rows": rows,
        "n": n,
        "lr": a.lr,
        "epochs": a.epochs,
        "cv": {"folds": a.cv_folds, "repeats": a.cv_repeats},
        "sizes": by_size,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
