"""How often does the served out-of-distribution flag fire? Measured per kind of input.

The flag is the energy score of the logits over the threshold `evaluate` fits on val
(`vistune.evaluate.ood`, 95% of val passes). This loads a trained model and its prepared
splits, fits the threshold on val the same way, and reports the flag rate on test (in
distribution: ~5% expected), uniform noise, blank frames (white, black, mid-grey) and other
domains (photos from /work/shared/datasets, decoded and resized as serving does).

    .venv/bin/python benchmarks/ood_flag_rates.py --model data/model/model.pt --prepared data/prepared \\
        --out benchmarks/results/ood_flag_rates.json
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import EXTS, decode_items  # noqa: E402
from vistune.data.preprocess import resize_rgb  # noqa: E402
from vistune.evaluate import ood  # noqa: E402
from vistune.models.classifier import Classifier  # noqa: E402

DATASETS = Path("/work/shared/datasets")


def _images(root: Path, n: int) -> list[tuple[Path, int]]:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTS)
    rng = np.random.default_rng(0)
    return [(files[i], 0) for i in sorted(rng.choice(len(files), size=min(n, len(files)), replace=False))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--prepared", type=Path, required=True)
    ap.add_argument("--n", type=int, default=200, help="images per synthetic / other-domain kind")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    clf = Classifier.load(args.model, device="cpu")
    size = clf.image_size
    val = torch.from_numpy(np.load(args.prepared / "val_images.npy"))
    val_z = clf.logits(val)
    threshold = ood.fit_threshold(val_z)
    msp_floor = float(np.quantile(val_z.softmax(dim=1).max(dim=1).values.numpy(), 1 - ood.QUANTILE))
    rng = np.random.default_rng(0)
    kinds = {
        "val (fitted on)": val,
        "test (in distribution)": torch.from_numpy(np.load(args.prepared / "test_images.npy")),
        "uniform noise": torch.from_numpy(rng.integers(0, 256, (args.n, 3, size, size), dtype=np.uint8)),
        # a big noise image, decoded and resized as serving does (area averaging: it comes out near grey)
        "uniform noise 1024px, resized": torch.from_numpy(
            np.stack(
                [
                    resize_rgb(rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8), size)
                    for _ in range(min(args.n, 20))
                ]
            )
        ),
        "blank white": torch.full((1, 3, size, size), 255, dtype=torch.uint8),
        "blank black": torch.zeros((1, 3, size, size), dtype=torch.uint8),
        "blank grey": torch.full((1, 3, size, size), 128, dtype=torch.uint8),
    }
    for name in ("hymenoptera", "eurosat_rgb5", "plantvillage_potato", "cub_warblers"):
        if (DATASETS / name).is_dir():
            kinds[f"other domain: {name}"] = torch.from_numpy(
                decode_items(_images(DATASETS / name, args.n), size).images
            )
    rows = {}
    for kind, x in kinds.items():
        z = clf.logits(x)
        conf = z.softmax(dim=1).max(dim=1).values
        rows[kind] = {
            "n": len(x),
            "flag_rate": float(ood.flags(z, threshold).mean()),
            "max_softmax_flag_rate": float((conf < msp_floor).float().mean()),
            "median_energy": float(np.median(ood.energy(z))),
            "median_max_softmax": float(conf.median()),
        }
        print(
            f"{kind:<36} n={len(x):>4}  flagged {rows[kind]['flag_rate']:6.1%}  median energy "
            f"{rows[kind]['median_energy']:8.3f}  median max-softmax {rows[kind]['median_max_softmax']:.3f}  "
            f"(max-softmax flag {rows[kind]['max_softmax_flag_rate']:6.1%})"
        )
    print(
        f"threshold (energy at {ood.QUANTILE:.0%} of val): {threshold:.3f}; max-softmax floor "
        f"({1 - ood.QUANTILE:.0%} of val): {msp_floor:.3f}"
    )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "date": str(date.today()),
                    "model": str(args.model),
                    "image_size": size,
                    "threshold": threshold,
                    "max_softmax_floor": msp_floor,
                    "quantile": ood.QUANTILE,
                    "kinds": rows,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
