"""Which batch size should `evaluate` use on a CPU? Its two kernels, timed per batch size.

The evaluate stage spends its time in no-grad forwards (test and val logits, 12 corruption passes, drift
embeddings) and in input-gradient steps (FGSM / PGD: forward + backward to the pixels), all at
`evaluate.batch_size`. On a GPU a large batch is free; on a CPU a large batch spills the caches. This
times both kernels for one backbone at one input size over `--images` random uint8 images, each batch
size in turn, round by round (so a change in machine load hits every batch size alike), the median of
the rounds after a warm-up, and writes images/s per batch size as JSON.

    .venv/bin/python benchmarks/eval_batch.py --model timm:tf_efficientnet_lite2 --size 288 \\
        --out benchmarks/results/eval_batch_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from pathlib import Path
from statistics import median

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vistune.models.backbones import create_backbone  # noqa: E402
from vistune.models.device_policy import place  # noqa: E402


def forward_pass(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> None:
    with torch.no_grad():
        for i in range(0, len(x), batch):
            net(x[i : i + batch])


def gradient_pass(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> None:
    """One FGSM/PGD step per image: cross-entropy's gradient with respect to the [0, 1] pixels."""
    for i in range(0, len(x), batch):
        pixels = (x[i : i + batch].float() / 255).requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(net(pixels), y[i : i + batch]), pixels)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="timm:tf_efficientnet_lite2")
    p.add_argument("--size", type=int, default=288)
    p.add_argument("--images", type=int, default=77, help="hymenoptera's test split holds 77")
    p.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32, 256])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    net = place(create_backbone(a.model, 2, "imagenet"), torch.device("cpu")).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (a.images, 3, a.size, a.size), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 2, (a.images,), generator=g)
    kernels = {"forward": forward_pass, "input_gradient": gradient_pass}
    seconds: dict[str, dict[int, list[float]]] = {k: {b: [] for b in a.batches} for k in kernels}
    for r in range(a.rounds + 1):  # round 0 warms up
        for name, fn in kernels.items():
            for b in a.batches:
                t = time.perf_counter()
                fn(net, x, y, b)
                if r:
                    seconds[name][b].append(time.perf_counter() - t)
    rows = {name: {str(b): round(a.images / median(s), 2) for b, s in by.items()} for name, by in seconds.items()}
    for name, by in rows.items():
        print(f"{name:15s} img/s by batch: " + "  ".join(f"{b}: {v}" for b, v in by.items()), flush=True)
    result = {
        "date": str(date.today()),
        "model": a.model,
        "size": a.size,
        "images": a.images,
        "rounds": a.rounds,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "img_per_s": rows,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
