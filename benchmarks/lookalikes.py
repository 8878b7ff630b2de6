"""The same object in two splits (issue 32, item 6), measured only: can the frozen features find val photos of
a leaf that train also photographed (plantvillage_potato), which pHash cannot?

Every train and val image is embedded once (`vistune.data.features.embed_files`, the stage's code and cache).
Each val image's nearest train image by cosine similarity is a candidate pair. The threshold is calibrated on
pairs known to show different objects without any extra labels: for each train image, its nearest train
image **of another class** (a different class is a different leaf); the threshold is a high percentile of
those similarities. Truth: the README's leaf-id rule (class + rank of the photo number within the class // 4).
A val image is flagged when its nearest train image *of its own class* is above the threshold. On sets without
leaf ids (`--leaf-ids` off) only the flagged fraction is reported: a false-flag rate where no object is known
to repeat. Not wired into `validate`: on cub_warblers the rule flags 30% of val at the 95th percentile
(benchmarks/RESULTS.md), far too many false alarms for a check users would keep on.

    .venv/bin/python benchmarks/lookalikes.py --data ../shared/datasets/plantvillage_potato \\
        --leaf-ids --out benchmarks/results/lookalikes_plantvillage_potato.json
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import folder_items, write_result  # noqa: E402

from vistune.data.features import FeatureSpec, embed_files  # noqa: E402
from vistune.io import sha256_bytes  # noqa: E402

PERCENTILES = (95.0, 99.0, 99.9, 100.0)
BLOCK = 1024  # rows of the similarity matrix at a time: memory stays ~BLOCK x n_train floats


@dataclass(frozen=True)
class Lookalikes:
    """Flagged rows (indices into the rows given), their nearest same-class train row, the similarity."""

    rows: np.ndarray
    partners: np.ndarray
    similarity: np.ndarray
    threshold: float


def _unit(features: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norm, 1e-12)


def _nearest(
    query: np.ndarray, train: np.ndarray, same: bool, q_labels: np.ndarray, t_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(index, similarity) of each query row's most similar train row of the same (`same`) or another class."""
    idx = np.zeros(len(query), dtype=np.int64)
    best = np.full(len(query), -np.inf, dtype=np.float32)
    for start in range(0, len(query), BLOCK):
        sim = query[start : start + BLOCK] @ train.T
        match = q_labels[start : start + BLOCK, None] == t_labels[None, :]
        sim = np.where(match if same else ~match, sim, -np.inf)
        idx[start : start + BLOCK] = sim.argmax(axis=1)
        best[start : start + BLOCK] = sim.max(axis=1)
    return idx, best


def find_lookalikes(features: np.ndarray, labels: np.ndarray, is_train: np.ndarray, percentile: float) -> Lookalikes:
    """Flag the non-train rows whose nearest same-class train row is closer than different objects get."""
    z = _unit(features.astype(np.float32))
    labels = np.asarray(labels)
    train, other = np.flatnonzero(is_train), np.flatnonzero(~np.asarray(is_train))
    empty = Lookalikes(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), float("nan"))
    if len(train) < 2 or not len(other) or len(set(labels[train].tolist())) < 2:
        return empty
    _, calib = _nearest(z[train], z[train], False, labels[train], labels[train])
    threshold = float(np.percentile(calib[np.isfinite(calib)], percentile))
    nn, best = _nearest(z[other], z[train], True, labels[other], labels[train])
    flag = best > threshold
    return Lookalikes(other[flag], train[nn[flag]], best[flag], threshold)


def leaf_ids(files: list[Path]) -> list[str]:
    """README rule: per class, photo numbers (the last number in the name) ranked ascending, 4 photos a leaf."""
    number = [int(re.findall(r"\d+", f.stem)[-1]) for f in files]
    ids = [""] * len(files)
    for cls in sorted({f.parent.name for f in files}):
        mine = sorted((n, i) for i, (f, n) in enumerate(zip(files, number)) if f.parent.name == cls)
        for rank, (_, i) in enumerate(mine):
            ids[i] = f"{cls}/{rank // 4}"
    return ids


def _leaked(leaf: list[str], n_train: int) -> np.ndarray:
    """Per val image: does train hold a photo of the same leaf?"""
    train_leaves = set(leaf[:n_train])
    return np.array([v in train_leaves for v in leaf[n_train:]])


def _against_leaves(leaf: list[str], n_train: int, val_idx: np.ndarray, partners: np.ndarray) -> dict:
    """Precision (the named partner is the same leaf; the val leaf is in train at all) and recall, by leaf id."""
    if not leaf:
        return {}
    leaked = _leaked(leaf, n_train)
    flagged = np.zeros(len(leaked), dtype=bool)
    flagged[val_idx] = True
    pair = [leaf[n_train + i] == leaf[j] for i, j in zip(val_idx, partners)]
    return {
        "precision_pair": round(float(np.mean(pair)), 4) if len(pair) else None,
        "precision_leaf": round(float(leaked[flagged].mean()), 4) if flagged.any() else None,
        "recall": round(float((flagged & leaked).sum() / max(leaked.sum(), 1)), 4),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", default="timm:tf_efficientnet_lite0")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--cache", type=Path, default=None, help="a features cache (e.g. a bench clone's validate cache)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--leaf-ids", action="store_true", help="plantvillage: truth from the README's leaf-id rule")
    args = ap.parse_args(argv)

    _, train = folder_items(args.data / "train")
    _, val = folder_items(args.data / "val")
    files = [p for p, _ in train + val]
    n_train = len(train)
    leaf = leaf_ids(files) if args.leaf_ids else []
    labels = np.array([f.parent.name for f in files])
    t0 = time.perf_counter()
    feats, n_new = embed_files(
        files,
        [sha256_bytes(f.read_bytes()) for f in files],
        FeatureSpec(args.model, "imagenet", "", args.size),
        args.cache,
    )
    embed_s = time.perf_counter() - t0
    is_train = np.arange(len(files)) < n_train
    rows = []
    for q in PERCENTILES:
        found = find_lookalikes(feats, labels, is_train, q)
        val_idx = found.rows - n_train
        rows.append(
            {
                "percentile": q,
                "threshold": round(found.threshold, 4),
                "n_flagged": len(found.rows),
                "flagged_fraction": round(len(found.rows) / len(val), 4),
                **_against_leaves(leaf, n_train, val_idx, found.partners),
            }
        )
    n_leaked = int(_leaked(leaf, n_train).sum()) if leaf else None
    print(
        f"{args.data.name}: {n_train} train, {len(val)} val"
        + (f" ({n_leaked} val images of a leaf also in train)" if leaf else "")
        + f"; {args.model} @{args.size}: {n_new} embedded in {embed_s:.1f}s"
    )
    print(" | ".join(rows[0]))
    for r in rows:
        print(" | ".join(str(v) for v in r.values()))
    write_result(
        args.out,
        {
            "date": date.today().isoformat(),
            "dataset": args.data.name,
            "model": args.model,
            "size": args.size,
            "n_train": n_train,
            "n_val": len(val),
            "n_val_leaked_leaf": n_leaked,
            "n_embedded": n_new,
            "seconds_embed": round(embed_s, 1),
            "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3],
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
