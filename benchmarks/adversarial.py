"""Clean vs adversarial accuracy for a plain and an adversarially fine-tuned model on digits.

Both models start from the same weights and seed and see the same data; only `train.adversarial`
differs. Each is scored on the held-out test split clean and under FGSM / PGD (L-inf, pixel units)
at a few epsilons, with the same attacks the evaluate stage uses (`vistune.evaluate.robustness.attack`).

    .venv/bin/python benchmarks/adversarial.py --device cpu --out benchmarks/results/adversarial_cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import device_name, prepared  # noqa: E402
from vistune.models.backbones import create_backbone  # noqa: E402
from vistune.config import AugmentCfg, TrainCfg  # noqa: E402
from vistune.data.prepared import SplitArrays  # noqa: E402
from vistune.train.finetune import create_strategy  # noqa: E402
from vistune.data.preprocess import resize_rgb  # noqa: E402
from vistune.evaluate.robustness import _accuracy, attack  # noqa: E402
from vistune.train.loop import fit, set_seed
from vistune.models.device_policy import resolve_device  # noqa: E402


def digits(size: int, seed: int = 0) -> tuple[list[str], dict[str, SplitArrays]]:
    """scikit-learn's 8x8 digits as uint8 RGB at `size` px, split 70/15/15 by a fixed seed."""
    from sklearn.datasets import load_digits

    d = load_digits()
    gray = np.clip(d.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    x = np.stack([resize_rgb(np.repeat(g[:, :, None], 3, 2), size) for g in gray])
    perm = np.random.default_rng(seed).permutation(len(x))
    n_test = n_val = int(0.15 * len(x))
    parts = {"test": perm[:n_test], "val": perm[n_test : n_test + n_val], "train": perm[n_test + n_val :]}
    return [str(i) for i in range(10)], {k: SplitArrays(x[v], d.target[v].astype(np.int64)) for k, v in parts.items()}


def score(b, x: torch.Tensor, y: torch.Tensor, eps_list: list[float], pgd_steps: int, device: torch.device) -> dict:
    b.model.eval()
    out = {"clean": _accuracy(b, x, y, device, 256)}
    for kind, steps in (("fgsm", 1), ("pgd", pgd_steps)):
        for eps in eps_list:
            adv = torch.cat(
                [attack(b, x[i : i + 256], y[i : i + 256], eps, steps, device) for i in range(0, len(y), 256)]
            )
            out[f"{kind}@{eps:g}"] = _accuracy(b, adv, y, device, 256)
    return out


def plot(results: dict, eps_list: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, style in (("plain", "-"), ("adversarial", "--")):
        acc = results[name]["accuracy"]
        for kind, marker in (("fgsm", "o"), ("pgd", "s")):
            ax.plot(
                [0.0] + eps_list,
                [acc["clean"]] + [acc[f"{kind}@{e:g}"] for e in eps_list],
                style,
                marker=marker,
                label=f"{name} / {kind.upper()}",
            )
    ax.set_xlabel("epsilon (L-inf, [0, 1] pixels)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("clean vs adversarial accuracy: plain vs adversarial training")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="timm:resnet10t")
    p.add_argument("--pretrained", default="none")
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--adversarial", default="pgd", choices=["fgsm", "pgd"])
    p.add_argument("--adv-epsilon", type=float, default=0.03)
    p.add_argument("--adv-steps", type=int, default=3)
    p.add_argument("--adv-fraction", type=float, default=0.5)
    p.add_argument("--eps", type=float, nargs="+", default=[0.01, 0.03, 0.06])
    p.add_argument("--pgd-steps", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/adversarial.json"))
    a = p.parse_args(argv)
    device = resolve_device(a.device)
    classes, splits = digits(a.image_size)
    data = prepared(classes, a.image_size, **splits)
    test_x, test_y = data.tensors("test")
    base = TrainCfg(
        model=a.model,
        pretrained=a.pretrained,
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        warmup_epochs=0.5,
        patience=0,
        device=a.device,
        seed=0,
    )
    acfg = AugmentCfg(image_size=a.image_size, scale=(0.8, 1.0), hflip=0.0, rotation=8.0, salt_pepper=0.0)
    results: dict = {}
    for name, tcfg in (
        ("plain", base),
        (
            "adversarial",
            dataclasses.replace(
                base,
                adversarial=a.adversarial,
                adv_epsilon=a.adv_epsilon,
                adv_steps=a.adv_steps,
                adv_fraction=a.adv_fraction,
            ),
        ),
    ):
        set_seed(0)
        b = create_backbone(a.model, len(classes), a.pretrained)
        t0 = time.perf_counter()
        res = fit(b, create_strategy("full", tcfg), data, tcfg, acfg, progress=False)
        train_s = time.perf_counter() - t0
        b.model.load_state_dict(res.state_dict)
        b.model.to(device)
        results[name] = {
            "train_s": train_s,
            "best_val_accuracy": res.best_val_accuracy,
            "accuracy": score(b, test_x, test_y, a.eps, a.pgd_steps, device),
        }
        acc = results[name]["accuracy"]
        print(f"{name:12s} train {train_s:6.1f}s  " + "  ".join(f"{k} {v:.3f}" for k, v in acc.items()), flush=True)
    out = {
        "date": date.today().isoformat(),
        "device": device_name(device),
        "args": {k: str(v) for k, v in vars(a).items()},
        "n": {s: len(v) for s, v in data.splits.items()},
        "results": results,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    plot(results, a.eps, a.out.with_suffix(".png"))
    print(f"wrote {a.out} and {a.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
