"""The measurements behind `vistune init`'s recipe rules (vistune/recipe.py), on this machine:

1. train-step images/s of each offline backbone (EfficientNet-Lite0/1/2 at its native size, fp32,
   channels_last, AdamW, full fine-tuning) and batch size, plus eval (no-grad forward) images/s;
2. fixed-feature accuracy on hymenoptera (a logistic regression on each backbone's pooled
   ImageNet features) for each photo decode policy: `squash` (whole image to SxS), `crop`
   (short side to S, centre SxS) and `crop875` (short side to S/0.875, centre SxS: timm's eval
   transform, a canvas larger than the crop).

    .venv/bin/python benchmarks/recipe_probe.py --out benchmarks/results/recipe_probe_cpu.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import device_name, folder_items, write_result  # noqa: E402
from vistune.data.imageio import decode_file  # noqa: E402
from vistune.data.preprocess import resize_rgb  # noqa: E402
from vistune.models.backbones import create_backbone  # noqa: E402

HYMENOPTERA = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "hymenoptera"
LITES = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")


def centre_crop(rgb: np.ndarray, size: int, crop_pct: float) -> np.ndarray:
    """Short side to size / crop_pct (bicubic), then the centre size x size; 3xSxS uint8."""
    img = Image.fromarray(rgb, mode="RGB")
    short = round(size / crop_pct)
    w, h = img.size
    scale = short / min(w, h)
    img = img.resize((max(short, round(w * scale)), max(short, round(h * scale))), Image.BICUBIC)
    left, top = (img.size[0] - size) // 2, (img.size[1] - size) // 2
    img = img.crop((left, top, left + size, top + size))
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))


POLICIES = {
    "squash": lambda rgb, s: resize_rgb(rgb, s),
    "crop": lambda rgb, s: centre_crop(rgb, s, 1.0),
    "crop875": lambda rgb, s: centre_crop(rgb, s, 0.875),
}


def _model(name: str):
    b = create_backbone(f"timm:{name}", 2, "imagenet")
    return b.model.to(memory_format=torch.channels_last), b.mean, b.std, b.input_size


def _norm(x: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return ((x.float() / 255 - m) / s).contiguous(memory_format=torch.channels_last)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def train_speed(configs: list[tuple[str, int]], rounds: int) -> list[dict]:
    """Median train-step and eval-forward images/s per (backbone, batch), interleaved round by round so
    every config sees the same machine load (other jobs share these cores)."""
    models = {name: _model(name) for name in {n for n, _ in configs}}
    opts = {name: torch.optim.AdamW(m[0].parameters(), lr=1e-4) for name, m in models.items()}
    times: dict[tuple[str, int], dict[str, list[float]]] = {c: {"train": [], "eval": []} for c in configs}
    for r in range(rounds + 1):  # round 0 warms oneDNN up and is not counted
        for name, batch in configs:
            model, mean, std, size = models[name]
            x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
            y = torch.randint(0, 2, (batch,))

            def step() -> None:
                model.train()
                loss = torch.nn.functional.cross_entropy(model(_norm(x, mean, std)), y)
                opts[name].zero_grad(set_to_none=True)
                loss.backward()
                opts[name].step()

            def forward() -> None:
                model.eval()
                with torch.no_grad():
                    model(_norm(x, mean, std))

            t_train, t_eval = _timed(step), _timed(forward)
            if r:
                times[(name, batch)]["train"].append(t_train)
                times[(name, batch)]["eval"].append(t_eval)
    return [
        {
            "model": n,
            "size": models[n][3],
            "batch": b,
            "train_img_s": b / float(np.median(t["train"])),
            "eval_img_s": b / float(np.median(t["eval"])),
            "rounds": rounds,
        }
        for (n, b), t in times.items()
    ]


@torch.no_grad()
def features(model, mean, std, images: np.ndarray, batch: int = 64) -> np.ndarray:
    out = []
    for i in range(0, len(images), batch):
        x = _norm(torch.from_numpy(images[i : i + batch]), mean, std)
        out.append(model.forward_head(model.forward_features(x), pre_logits=True).numpy())
    return np.concatenate(out)


def probe_accuracy(name: str, data: Path, seed: int = 42) -> list[dict]:
    from sklearn.linear_model import LogisticRegression

    model, mean, std, size = _model(name)
    model.eval()
    _, train = folder_items(data / "train")
    _, val = folder_items(data / "val")
    train = [(p, y) for p, y in train if p.suffix.lower() != ".gif"]  # the imageNotFound placeholder
    rgb_train = [decode_file(p) for p, _ in train]
    rgb_val = [decode_file(p) for p, _ in val]
    ytr = np.array([y for _, y in train])
    yva = np.array([y for _, y in val])
    rows = []
    for policy, fn in POLICIES.items():
        t0 = time.perf_counter()
        ftr = features(model, mean, std, np.stack([fn(r, size) for r in rgb_train]))
        fva = features(model, mean, std, np.stack([fn(r, size) for r in rgb_val]))
        clf = LogisticRegression(max_iter=3000, C=1.0).fit(ftr, ytr)
        acc = float((clf.predict(fva) == yva).mean())
        rows.append(
            {
                "model": name,
                "size": size,
                "policy": policy,
                "val_accuracy": acc,
                "n_val": len(yva),
                "errors": int((clf.predict(fva) != yva).sum()),
                "seconds": time.perf_counter() - t0,
            }
        )
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=HYMENOPTERA)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--skip-accuracy", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--models", nargs="+", default=list(LITES), help="backbones for the fixed-feature probe")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/recipe_probe_cpu.json"))
    a = p.parse_args(argv)
    torch.manual_seed(0)
    configs = [(LITES[0], 16), (LITES[0], 32), (LITES[0], 64), (LITES[1], 32), (LITES[2], 32)]
    speed = [] if a.skip_speed else train_speed(configs, a.steps)
    for row in speed:
        print(row, flush=True)
    acc = [] if a.skip_accuracy else [r for name in a.models for r in probe_accuracy(name, a.data)]
    write_result(
        a.out,
        {
            "date": date.today().isoformat(),
            "device": device_name(torch.device("cpu")),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "torch": torch.__version__,
            "speed": speed,
            "fixed_feature_accuracy": acc,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
