"""The same object in two splits (issue 32, item 6): how much of it does `validate`'s look-alike rule find?

`vistune.data.lookalikes.find_lookalikes` (what `validate` runs) over every train and val image of a photo
set in ImageFolder layout, on the frozen features `validate` uses (`embed_files`, the stage's code and
cache; pass the model and size the set's recipe picks). Three figures:
- **Leaked leaves** (`--leaf-ids`, plantvillage_potato): truth is the README's leaf-id rule (class + rank of
  the photo number within the class // 4). Recall = flagged val images whose leaf train also photographed,
  over all such; pair precision = flagged pairs whose named train partner is the same leaf.
- **Re-shots** (`--reshots N`): N seeded train photos shot again (mirrored at random, turned up to 15
  degrees, cropped 3-10% a side, brightness 0.85-1.15, JPEG q85) and added to val; recall = those flagged
  with their original as partner. pHash misses the mirrored ones.
- **Flagged fraction of the real val**: on sets where no object is known to repeat, an upper bound on the
  false-flag rate (some flags are real repeats: look at the pairs).

    .venv/bin/python benchmarks/lookalikes.py --data ../shared/datasets/plantvillage_potato \\
        --leaf-ids --reshots 30 --out benchmarks/results/lookalikes_plantvillage_potato.json
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import folder_items, write_result  # noqa: E402

from vistune.data import lookalikes  # noqa: E402
from vistune.data.features import FeatureSpec, embed_files  # noqa: E402
from vistune.io import sha256_bytes  # noqa: E402


def leaf_ids(files: list[Path]) -> list[str]:
    """README rule: per class, photo numbers (the last number in the name) ranked ascending, 4 photos a leaf."""
    number = [int(re.findall(r"\d+", f.stem)[-1]) for f in files]
    ids = [""] * len(files)
    for cls in sorted({f.parent.name for f in files}):
        mine = sorted((n, i) for i, (f, n) in enumerate(zip(files, number)) if f.parent.name == cls)
        for rank, (_, i) in enumerate(mine):
            ids[i] = f"{cls}/{rank // 4}"
    return ids


def another_shot(path: Path, rng: np.random.Generator) -> bytes:
    """The same photo as if taken again: mirrored (half the time), turned, cropped, lit differently."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if rng.random() < 0.5:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        im = im.rotate(float(rng.uniform(-15, 15)))
        w, h = im.size
        c = float(rng.uniform(0.03, 0.1))
        im = im.crop((int(w * c), int(h * c), int(w * (1 - c)), int(h * (1 - c))))
        im = ImageEnhance.Brightness(im).enhance(float(rng.uniform(0.85, 1.15)))
        out = io.BytesIO()
        im.save(out, format="JPEG", quality=85)
    return out.getvalue()


def _leaf_figures(leaf: list[str], n_train: int, val_flagged: np.ndarray, partners: dict[int, int]) -> dict:
    """Recall of val images whose leaf is in train; precision of the named pairs, by leaf id."""
    train_leaves = set(leaf[:n_train])
    leaked = np.array([v in train_leaves for v in leaf[n_train:]])
    pair = [leaf[n_train + i] == leaf[j] for i, j in partners.items()]
    return {
        "n_val_leaked_leaf": int(leaked.sum()),
        "leaf_recall": round(float((val_flagged & leaked).sum() / max(leaked.sum(), 1)), 4),
        "pair_precision": round(float(np.mean(pair)), 4) if pair else None,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", default="timm:tf_efficientnet_lite0")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--cache", type=Path, default=None, help="a features cache (e.g. a bench clone's validate cache)")
    ap.add_argument("--reshots", type=int, default=30, help="train photos shot again and added to val")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--leaf-ids", action="store_true", help="plantvillage: truth from the README's leaf-id rule")
    args = ap.parse_args(argv)

    _, train = folder_items(args.data / "train")
    _, val = folder_items(args.data / "val")
    files = [p for p, _ in train + val]
    n_train, n_val = len(train), len(val)
    labels = [f.parent.name for f in files]
    rng = np.random.default_rng(args.seed)
    originals = rng.choice(n_train, size=min(args.reshots, n_train), replace=False)
    shots = [another_shot(files[i], rng) for i in originals]
    sources = [*files, *(lambda b=b: b for b in shots)]
    t0 = time.perf_counter()
    feats, n_new = embed_files(
        sources,
        [sha256_bytes(f.read_bytes()) for f in files] + [sha256_bytes(b) for b in shots],
        FeatureSpec(args.model, "imagenet", "", args.size),
        args.cache,
    )
    embed_s = time.perf_counter() - t0
    labels = np.array(labels + [labels[i] for i in originals])
    is_train = np.arange(len(feats)) < n_train
    t1 = time.perf_counter()
    found = lookalikes.find_lookalikes(feats, labels, is_train)
    rule_s = time.perf_counter() - t1
    partner = dict(zip(found.rows.tolist(), found.partners.tolist()))
    val_flagged = np.array([n_train + i in partner for i in range(n_val)])
    reshot_found = [partner.get(n_train + n_val + k) == int(o) for k, o in enumerate(originals)]
    row = {
        "n_flagged_val": int(val_flagged.sum()),
        "flagged_val_fraction": round(float(val_flagged.mean()), 4),
        "reshot_recall": round(float(np.mean(reshot_found)), 4) if len(originals) else None,
        "threshold": round(found.threshold, 4),
        "gap_threshold": round(found.gap_threshold, 4),
    }
    if args.leaf_ids:
        pairs = {i - n_train: j for i, j in partner.items() if i < n_train + n_val}
        row.update(_leaf_figures(leaf_ids(files), n_train, val_flagged, pairs))
    print(
        f"{args.data.name}: {n_train} train, {n_val} val, {len(originals)} re-shots; {args.model} @{args.size}: "
        f"{n_new} embedded in {embed_s:.1f}s, rule {rule_s:.1f}s"
    )
    print("  " + ", ".join(f"{k} {v}" for k, v in row.items()))
    examples = [
        (str(files[i].relative_to(args.data)), str(files[j].relative_to(args.data)))
        for i, j in list(partner.items())[:10]
        if i < n_train + n_val
    ]
    write_result(
        args.out,
        {
            "date": date.today().isoformat(),
            "dataset": args.data.name,
            "model": args.model,
            "size": args.size,
            "rule": {
                k: getattr(lookalikes, k)
                for k in ("TOP_PERCENTILE", "GAP_PERCENTILE", "GAP_K", "IMAGES_PER_COMPONENT", "CALIBRATION_ROWS")
            },
            "n_train": n_train,
            "n_val": n_val,
            "n_reshots": len(originals),
            "n_embedded": n_new,
            "seconds_embed": round(embed_s, 1),
            "seconds_rule": round(rule_s, 2),
            "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3],
            **row,
            "flagged_val_pairs_first_10": examples,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
