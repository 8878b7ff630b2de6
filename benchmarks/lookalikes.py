"""The same object in two splits (issue 32, item 6), measured only: can the frozen features find val photos of
a leaf that train also photographed (plantvillage_potato), which pHash cannot?

Every train and val image is embedded once (`vistune.data.features.embed_files`, the stage's code and cache).
Each val image's nearest train image by cosine similarity is a candidate pair. The threshold is calibrated on
pairs known to show different objects without any extra labels: for each train image, its nearest train
image **of another class** (a different class is a different leaf); the threshold is a high percentile of
those similarities. Truth: the README's leaf-id rule (class + rank of the photo number within the class // 4).
Not wired into `validate` (no `leak_of` marks): this only measures whether the rule would work.

    .venv/bin/python benchmarks/lookalikes.py --data ../shared/datasets/plantvillage_potato \\
        --out benchmarks/results/lookalikes_plantvillage_potato.json
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import folder_items, write_result  # noqa: E402

from vistune.data.features import FeatureSpec, embed_files  # noqa: E402
from vistune.io import sha256_bytes  # noqa: E402

PERCENTILES = (95.0, 99.0, 99.9, 100.0)


def leaf_ids(files: list[Path]) -> list[str]:
    """README rule: per class, photo numbers (the last number in the name) ranked ascending, 4 photos a leaf."""
    number = [int(re.findall(r"\d+", f.stem)[-1]) for f in files]
    ids = [""] * len(files)
    for cls in sorted({f.parent.name for f in files}):
        mine = sorted((n, i) for i, (f, n) in enumerate(zip(files, number)) if f.parent.name == cls)
        for rank, (_, i) in enumerate(mine):
            ids[i] = f"{cls}/{rank // 4}"
    return ids


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", default="timm:tf_efficientnet_lite0")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    _, train = folder_items(args.data / "train")
    _, val = folder_items(args.data / "val")
    files = [p for p, _ in train + val]
    n_train = len(train)
    leaf = leaf_ids(files)
    labels = np.array([f.parent.name for f in files])
    t0 = time.perf_counter()
    feats, n_new = embed_files(
        files,
        [sha256_bytes(f.read_bytes()) for f in files],
        FeatureSpec(args.model, "imagenet", "", args.size),
        args.cache,
    )
    embed_s = time.perf_counter() - t0
    z = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    zt, zv = z[:n_train], z[n_train:]
    # calibration: nearest train image of another class (certainly another leaf)
    sim_tt = zt @ zt.T
    other = labels[:n_train][:, None] != labels[:n_train][None, :]
    calib = np.where(other, sim_tt, -1).max(axis=1)
    sim_vt = zv @ zt.T
    nn = sim_vt.argmax(axis=1)
    best = sim_vt.max(axis=1)
    train_leaves = set(leaf[:n_train])
    leaked = np.array([leaf[n_train + i] in train_leaves for i in range(len(val))])
    same_pair = np.array([leaf[n_train + i] == leaf[j] for i, j in enumerate(nn)])
    rows = []
    for q in PERCENTILES:
        thr = float(np.percentile(calib, q))
        flag = best > thr
        rows.append(
            {
                "percentile": q,
                "threshold": round(thr, 4),
                "n_flagged": int(flag.sum()),
                "precision_pair": round(float(same_pair[flag].mean()), 4) if flag.any() else None,
                "precision_leaf": round(float(leaked[flag].mean()), 4) if flag.any() else None,
                "recall": round(float((flag & leaked).sum() / max(leaked.sum(), 1)), 4),
            }
        )
    print(
        f"{args.data.name}: {n_train} train, {len(val)} val ({int(leaked.sum())} val images of a leaf also in "
        f"train); {args.model} @{args.size}: {n_new} embedded in {embed_s:.1f}s; nearest-neighbour pair is the "
        f"same leaf for {same_pair.mean():.3f} of val images"
    )
    print("percentile | threshold | n_flagged | precision_pair | precision_leaf | recall")
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
            "n_val_leaked_leaf": int(leaked.sum()),
            "nn_same_leaf": round(float(same_pair.mean()), 4),
            "n_embedded": n_new,
            "seconds_embed": round(embed_s, 1),
            "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3],
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
