"""A real, accurate digits classifier registered cheaply: EfficientNet-Lite0 (offline ImageNet weights)
whose head is a ridge classifier fitted on its own penultimate embeddings of 500 digit scans
(seconds, forward passes only; ~0.9 accuracy on unseen digits at 32 px). It is logged the way
`register` logs a pipeline run: weights, the training manifest (`validate/manifest.csv`) and the
drift reference (`evaluate/drift_reference.npy`), then promoted to champion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

TRAIN = range(0, 500)
FRESH = range(1497, 1797)  # never trained on


def write_digits(folder: Path, indices, transform=None, split: str | None = None) -> list[Path]:
    """Digits as `ingest` writes them (8x8 L PNG), under [<split>/]<label>/digit_<i>.png."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(digits.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    out = []
    for i in indices:
        img = Image.fromarray(images[i], mode="L")
        dest = folder / (split or "") / str(int(digits.target[i])) / f"digit_{i:04d}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        (transform(img) if transform else img).save(dest)
        out.append(dest)
    return out


def fit_head(head: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor, l2: float = 1.0, scale: float = 8.0) -> None:
    """Ridge regression onto one-hot targets (closed form, dual: n < d) written into the model's own head,
    logits = scale * scores. Iterative logistic regression (sklearn, torch L-BFGS) took 100+ s on the
    shared 2-core box; this takes well under a second and is as accurate here."""
    mean = x.mean(0, keepdim=True)
    xc = (x - mean).double()
    targets = torch.nn.functional.one_hot(y, head.out_features).double() - 1.0 / head.out_features
    alpha = torch.linalg.solve(xc @ xc.T + l2 * torch.eye(len(x), dtype=torch.float64), targets)
    w = (xc.T @ alpha).T * scale  # C x D
    with torch.no_grad():
        head.weight.copy_(w.float())
        head.bias.copy_((-(mean.double() @ w.T)).squeeze(0).float())


def register_digits_model(tmp: Path, register_cfg, size: int = 32) -> str:
    """Fit, save, log and promote the model; returns its version."""
    from integrations import registry, tracking
    from vistune.data.manifest import build_manifest
    from vistune.evaluate import drift
    from vistune.models.backbones import create_backbone
    from vistune.models.classifier import Classifier, save_model
    from vistune.models.device_policy import place

    ref = tmp / "train_data"
    files = write_digits(ref, TRAIN, split="train")
    classes = [str(c) for c in range(10)]
    labels = np.array([int(f.parent.name) for f in files])
    backbone = create_backbone("timm:tf_efficientnet_lite0", len(classes), pretrained="imagenet")
    place(backbone, torch.device("cpu")).eval()
    images = Classifier(backbone, classes, size, torch.device("cpu")).prepare([f.read_bytes() for f in files])
    feats = drift.embed(backbone, images, torch.device("cpu"))
    fit_head(backbone.head_module(), torch.from_numpy(feats), torch.from_numpy(labels))
    model_file = tmp / "model.pt"
    save_model(model_file, backbone, backbone.model.state_dict(), classes, size, {})
    manifest = build_manifest(ref, max_pixels=89_478_485)
    (tmp / "validate").mkdir(exist_ok=True)
    manifest.to_csv(tmp / "validate" / "manifest.csv", index=False)
    drift.save_reference(
        tmp / "evaluate" / "drift_reference.npy", drift.reference_features(backbone, images, torch.device("cpu"))
    )
    tracker = tracking.Tracker.open(register_cfg, tmp)
    _, version = tracker.log_run(
        tracking.RunRecord(
            name="digits-lr-head",
            params={"train": {"head": "logistic regression on embeddings"}},
            metrics={},
            history=pd.DataFrame({"epoch": []}),
            manifest=manifest,
            manifest_uri=ref.as_uri(),
            artifacts=[
                (tmp / "validate" / "manifest.csv", "validate"),
                (tmp / "evaluate" / "drift_reference.npy", "evaluate"),
            ],
            model_file=model_file,
            classes=classes,
            example_image=files[0].read_bytes(),
        )
    )
    registry.promote(tracker.client, register_cfg.model_name, version, tracker.lock, reason="test fixture")
    return version
