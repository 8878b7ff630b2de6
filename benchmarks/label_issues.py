"""How many seeded label flips does `validate`'s label-issue search find, and what does excluding them buy?

For a photo set in ImageFolder form (`train/`, `val/`): every image is embedded once by the frozen
pretrained backbone (`vistune.data.features.embed_files`, the stage's code and cache), then per noise
rate and seed a share of the **train** labels is flipped to another class at random, and the stage's
rule runs on the train split (`out_of_sample_probs` + `confident_learning`), or with `--scope trainval`
on train+val as the stage does (val labels clean; flags counted among train images only):

- precision@k / recall@k: flips among the k most suspicious flagged train images (k = number of flips);
  also precision / recall of every flag;
- a linear-probe proxy for "test accuracy" (not the pipeline's fine-tuning): the same logistic
  regression trained on the train features with the noisy labels, with the flagged images left out
  (`exclude`), and with the clean labels, scored on `val/`;
- `--holdout-by-leaf` (plantvillage_potato): train/ and val/ share leaves (README), so a head that loses train
  images also loses the val leaves it had memorised; this pools both, holds out 20% of the *leaves* (seeded,
  the README's leaf-id rule) as the scoring split and runs everything above on the rest;
- noise 0: the false-flag rate of the clean set;
- time: the forward passes (cold cache, per image) and the K-fold + ranking.
With `--cleanlab PYTHON` (a throwaway venv with cleanlab; AGPL, never a vistune dependency) the same
probabilities go to cleanlab's `find_label_issues` and the agreement of the flagged sets is recorded.

    .venv/bin/python benchmarks/label_issues.py --data ../shared/datasets/hymenoptera \\
        --model timm:tf_efficientnet_lite2 --size 288 --cleanlab /tmp/cl/bin/python \\
        --out benchmarks/results/label_issues_hymenoptera.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import folder_items, write_result  # noqa: E402

from vistune.data.features import FeatureSpec, embed_files  # noqa: E402
from vistune.data.label_issues import (  # noqa: E402
    confident_learning,
    find_label_issues,
    linear_head,
    out_of_sample_probs,
)
from vistune.io import sha256_bytes  # noqa: E402

CLEANLAB = """
import json, sys, numpy as np
from cleanlab.filter import find_label_issues
z = np.load(sys.argv[1])
out = {}
for f in ("confident_learning", "prune_by_noise_rate"):
    out[f] = find_label_issues(z["labels"], z["probs"], filter_by=f).nonzero()[0].tolist()
print(json.dumps(out))
"""


def split_items(root: Path, split: str, cap: int, seed: int) -> tuple[list[str], list[Path], np.ndarray]:
    """(classes, files, labels) of one split; a seeded sample of `cap` files when it holds more (0 = all)."""
    classes, items = folder_items(root / split)
    if cap and len(items) > cap:
        keep = np.sort(np.random.default_rng(seed).choice(len(items), cap, replace=False))
        items = [items[i] for i in keep]
    return classes, [p for p, _ in items], np.array([y for _, y in items])


def flip(y: np.ndarray, rate: float, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(noisy labels, flipped indices): round(rate * n) labels moved to a random other class."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(y), round(rate * len(y)), replace=False))
    noisy = y.copy()
    noisy[idx] = (y[idx] + rng.integers(1, n_classes, len(idx))) % n_classes
    return noisy, idx


def leaf_holdout(files: list[Path], val_files: list[Path], classes: list[str], share: float = 0.2, seed: int = 0):
    """(train files, y, held-out files, y): train/ + val/ pooled, `share` of the leaves held out whole."""
    from lookalikes import leaf_ids
    from sklearn.model_selection import GroupShuffleSplit

    pool = files + val_files
    y = np.array([classes.index(f.parent.name) for f in pool])
    keep, held = next(GroupShuffleSplit(1, test_size=share, random_state=seed).split(pool, y, leaf_ids(pool)))
    return [pool[i] for i in keep], y[keep], [pool[i] for i in held], y[held]


def probe_accuracy(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """The stage's head (`linear_head`) trained on (x, y), scored on test."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return float((linear_head().fit(x, y).predict(x_test) == y_test).mean())


def cleanlab_flags(python: str, labels: np.ndarray, probs: np.ndarray) -> dict[str, list[int]]:
    with tempfile.TemporaryDirectory() as d:
        np.savez(Path(d) / "p.npz", labels=labels, probs=probs)
        out = subprocess.run(
            [python, "-c", CLEANLAB, str(Path(d) / "p.npz")], capture_output=True, text=True, check=True
        )
    return json.loads(out.stdout)


def one_run(x, y, x_val, y_val, n_classes, rate, seed, folds, cleanlab, trainval=False, rounds=1):
    noisy, flipped = flip(y, rate, n_classes, seed) if rate else (y.copy(), np.array([], dtype=int))
    t0 = time.perf_counter()
    xs, ys = (np.concatenate([x, x_val]), np.concatenate([noisy, y_val])) if trainval else (x, noisy)
    issues_all = find_label_issues(xs, ys, folds, seed, rounds)
    seconds = time.perf_counter() - t0
    issues = type(issues_all)(
        issues_all.flagged[: len(y)], issues_all.suggested[: len(y)], issues_all.score[: len(y)], issues_all.thresholds
    )
    ranked, truth, k = issues.ranked(), set(flipped.tolist()), len(flipped)
    top = ranked[:k]
    hits_all = len(truth & set(ranked.tolist()))
    keep = ~issues.flagged
    row = {
        "noise": rate,
        "seed": seed,
        "n_train": len(y),
        "n_flips": k,
        "n_flagged": int(issues.flagged.sum()),
        "precision_at_k": round(len(truth & set(top.tolist())) / len(top), 4) if k and len(top) else None,
        "recall_at_k": round(len(truth & set(top.tolist())) / k, 4) if k else None,
        "precision_all": round(hits_all / len(ranked), 4) if len(ranked) else None,
        "recall_all": round(hits_all / k, 4) if k else None,
        "false_flag_rate": round((len(ranked) - hits_all) / (len(y) - k), 4),
        "seconds_kfold_rank": round(seconds, 2),
        "probe_acc_noisy": probe_accuracy(x, noisy, x_val, y_val),
        "probe_acc_exclude": probe_accuracy(x[keep], noisy[keep], x_val, y_val),
        "probe_acc_clean": probe_accuracy(x, y, x_val, y_val),
    }
    if cleanlab:  # the rule itself (one round) against cleanlab's on the same probabilities
        probs_all = out_of_sample_probs(xs, ys, folds, seed)
        cl = cleanlab_flags(cleanlab, ys, probs_all)
        mine = set(np.flatnonzero(confident_learning(ys, probs_all).flagged).tolist())
        for name, flags in cl.items():
            s = set(flags)
            row[f"cleanlab_{name}_n"] = len(s)
            row[f"cleanlab_{name}_jaccard"] = round(len(mine & s) / len(mine | s), 4) if mine | s else 1.0
            row[f"cleanlab_{name}_recall_all"] = round(len(truth & s) / k, 4) if k else None
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", default="timm:tf_efficientnet_lite2")
    ap.add_argument("--size", type=int, default=288)
    ap.add_argument("--max-train", type=int, default=0, help="seeded sample of train/ (0 = all)")
    ap.add_argument("--max-val", type=int, default=0)
    ap.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.05, 0.10])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--scope", choices=["train", "trainval"], default="train")
    ap.add_argument("--cache", type=Path, default=None, help="feature cache .npz (the stage's format)")
    ap.add_argument("--rounds", type=int, default=2, help="validate.label_issue_rounds")
    ap.add_argument("--holdout-by-leaf", action="store_true", help="plantvillage: score on held-out leaves")
    ap.add_argument("--cleanlab", default="", help="python of a throwaway venv with cleanlab installed")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    classes, files, y = split_items(args.data, "train", args.max_train, 0)
    _, val_files, y_val = split_items(args.data, "val", args.max_val, 1)
    files = [f for f in files if f.suffix.lower() != ".gif"]  # hymenoptera's placeholder GIF (validate refuses it)
    y = np.array([classes.index(f.parent.name) for f in files])
    if args.holdout_by_leaf:
        files, y, val_files, y_val = leaf_holdout(files, val_files, classes)
    spec = FeatureSpec(args.model, "imagenet", "", args.size)
    all_files = files + val_files
    t0 = time.perf_counter()
    feats, n_new = embed_files(all_files, [sha256_bytes(f.read_bytes()) for f in all_files], spec, args.cache)
    embed_s = time.perf_counter() - t0
    x, x_val = feats[: len(files)], feats[len(files) :]
    rows = [
        one_run(
            x,
            y,
            x_val,
            y_val,
            len(classes),
            rate,
            seed,
            args.folds,
            args.cleanlab,
            args.scope == "trainval",
            args.rounds,
        )
        for rate in args.noise
        for seed in (args.seeds if rate else args.seeds[:1])
    ]
    print(
        f"{args.data.name} (scope {args.scope}): {len(files)} train, {len(val_files)} val, {len(classes)} classes; {args.model} @{args.size}: "
        f"{n_new} images embedded in {embed_s:.1f}s ({embed_s / max(n_new, 1):.3f}s each, 0 = cached)"
    )
    cols = [
        "noise",
        "seed",
        "n_flips",
        "n_flagged",
        "precision_at_k",
        "recall_at_k",
        "precision_all",
        "recall_all",
        "false_flag_rate",
        "seconds_kfold_rank",
        "probe_acc_noisy",
        "probe_acc_exclude",
        "probe_acc_clean",
    ]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    uptime = Path("/proc/loadavg").read_text().split()[:3]
    write_result(
        args.out,
        {
            "date": date.today().isoformat(),
            "dataset": args.data.name,
            "model": args.model,
            "size": args.size,
            "scope": args.scope,
            "holdout_by_leaf": args.holdout_by_leaf,
            "rounds": args.rounds,
            "n_train": len(files),
            "n_val": len(val_files),
            "n_embedded": n_new,
            "seconds_embed": round(embed_s, 1),
            "loadavg_at_end": uptime,
            "max_train": args.max_train,
            "max_val": args.max_val,
            "runs": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
