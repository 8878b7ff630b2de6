"""Where should a linear probe's head start: at random, or at the ImageNet rows its class names name?

On a prepared data set (`data/prepared` of a run whose classes are ImageNet names, e.g. hymenoptera's
ants/bees), the frozen backbone's pooled features are computed once (clean and mirrored; cached in
`--features`), then a head is trained on them the way `fit` trains `linear_probe` (AdamW, weight decay
0.05, label smoothing 0.1, batch 32) from each start and LR, and the val/test errors after every epoch
are printed and written as JSON. Also: the zero-shot answer of the ImageNet rows alone.

    .venv/bin/python benchmarks/head_init.py --prepared /tmp/run/data/prepared --out benchmarks/results/head_init_lite0.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vistune.data.prepared import load_prepared  # noqa: E402
from vistune.models.backbones import create_backbone  # noqa: E402
from vistune.models.imagenet_names import imagenet_rows  # noqa: E402


def features(prepared: Path, spec: str) -> dict[str, np.ndarray]:
    """Pooled features (the head's input) of every split of a prepared set, as is and mirrored, plus labels."""
    data = load_prepared(prepared)
    splits = {s: (np.asarray(a.images), np.asarray(a.labels)) for s, a in data.splits.items()}
    return features_of(splits, data.classes, spec)


def features_of(
    splits: dict[str, tuple[np.ndarray, np.ndarray]], classes: list[str], spec: str
) -> dict[str, np.ndarray]:
    """`{split: (uint8 NCHW images, labels)}` -> `{split}_clean`, `{split}_flip`, `{split}_y` and `classes`."""
    b = create_backbone(spec, len(classes), "imagenet")
    net = b.net.eval().to(memory_format=torch.channels_last)
    seen: dict[str, torch.Tensor] = {}
    b.head_module().register_forward_hook(lambda m, i, o: seen.__setitem__("x", i[0].detach()))

    def run(x: np.ndarray) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(x), 32):
                batch = torch.from_numpy(np.ascontiguousarray(x[i : i + 32])).float().div(255)
                net(batch.contiguous(memory_format=torch.channels_last))
                out.append(seen["x"].clone())
        return torch.cat(out).numpy()

    res: dict[str, np.ndarray] = {"classes": np.array(classes)}
    for split, (images, labels) in splits.items():
        res[f"{split}_y"] = labels
        res[f"{split}_clean"] = run(images)
        res[f"{split}_flip"] = run(images[..., ::-1])
    return res


def imagenet_head(spec: str, rows: list[int], dim: int) -> torch.nn.Linear:
    """A head holding the ImageNet classifier's `rows`, built the way `train.head_init` builds it."""
    b = create_backbone(spec, len(rows), "imagenet", head_rows=rows)
    head = torch.nn.Linear(dim, len(rows))
    head.load_state_dict(b.head_module().state_dict())
    return head


def errors(head: torch.nn.Linear, z: dict, split: str) -> int:
    with torch.no_grad():
        pred = head(torch.from_numpy(z[f"{split}_clean"]).float()).argmax(1).numpy()
    return int((pred != z[f"{split}_y"]).sum())


def train_head(head: torch.nn.Linear, z: dict, lr: float, epochs: int, seed: int) -> list[tuple[int, int]]:
    """(val errors, test errors) at the start and after each epoch on clean + mirrored train features."""
    torch.manual_seed(seed)
    x = torch.from_numpy(np.concatenate([z["train_clean"], z["train_flip"]])).float()
    y = torch.from_numpy(np.concatenate([z["train_y"], z["train_y"]])).long()
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.05)
    out = [(errors(head, z, "val"), errors(head, z, "test"))]
    for _ in range(epochs):
        for idx in torch.randperm(len(y)).split(32):
            loss = F.cross_entropy(head(x[idx]), y[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
        out.append((errors(head, z, "val"), errors(head, z, "test")))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prepared", type=Path, required=True)
    p.add_argument("--model", default="timm:tf_efficientnet_lite0")
    p.add_argument("--features", type=Path, default=None, help="cache of the features (.npz); made if absent")
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 5e-3])
    p.add_argument("--epochs", type=int, default=11)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    if a.features is not None and a.features.is_file():
        z = dict(np.load(a.features))
    else:
        z = features(a.prepared, a.model)
        if a.features is not None:
            np.savez(a.features, **z)
    classes = [str(c) for c in z["classes"]]
    rows, unmatched = imagenet_rows(classes)
    if rows is None:
        p.error(f"classes {unmatched} name no single ImageNet class")
    dim = z["train_clean"].shape[1]
    runs = {}
    for start in ("imagenet_names", "random"):
        for lr in a.lrs:
            torch.manual_seed(a.seed)
            head = imagenet_head(a.model, rows, dim) if start == "imagenet_names" else torch.nn.Linear(dim, len(rows))
            runs[f"{start} lr={lr:g}"] = train_head(head, z, lr, a.epochs, a.seed)
            print(f"{start:15s} lr={lr:<6g} (val, test) errors by epoch: {runs[f'{start} lr={lr:g}']}", flush=True)
    n = {s: int(len(z[f"{s}_y"])) for s in ("train", "val", "test")}
    result = {
        "date": str(date.today()),
        "model": a.model,
        "classes": classes,
        "imagenet_rows": rows,
        "n": n,
        "zero_shot_errors": {s: errors(imagenet_head(a.model, rows, dim), z, s) for s in ("val", "test")},
        "epochs": a.epochs,
        "errors_by_epoch": runs,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(f"zero-shot (ImageNet rows alone) errors: {result['zero_shot_errors']} of {n}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
