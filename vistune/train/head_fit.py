"""`train.head_init: features`: the new head starts as the linear probe the frozen features already support.

A logistic regression (the label-issue search's `linear_head`: standardized features, L2, C=0.1) is fitted on the
pretrained backbone's features of the unaugmented train images, and folded into the classifier layer
(weights / scale, bias - weights . mean / scale), so training starts at that probe's answers instead of a
random head. The features come from validate's feature cache (`vistune.data.features`, by sha256) where it
holds them for this backbone, weights and size; the rest take one forward pass each here.
Measured on cub_warblers (Lite1 @240, 447 train images, benchmarks/RESULTS.md 2026-12-06): this regression
scored val 0.898 on the cached features, the head trained from random for 6 epochs 0.849.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vistune.data.features import FeatureSpec, load_cache
from vistune.errors import ConfigError


def train_features(
    backbone, images: np.ndarray, shas: Sequence[str] | None, spec: FeatureSpec, cache: Path | None, device
) -> tuple[np.ndarray, int]:
    """(N x D features of `images`, how many came from the cache); `shas` None: none from the cache."""
    from vistune.evaluate.drift import embed

    cached = load_cache(cache, spec.key) if shas is not None else {}
    rows = [cached.get(s.encode()) for s in shas] if shas is not None else [None] * len(images)
    todo = [i for i, r in enumerate(rows) if r is None]
    for start in range(0, len(todo), 256):
        part = todo[start : start + 256]
        feats = embed(backbone, torch.from_numpy(np.ascontiguousarray(images[part])), device)
        for i, f in zip(part, feats):
            rows[i] = f.astype(np.float16)  # as the cache keeps them: one path, the same numbers
    return np.stack(rows).astype(np.float32), len(rows) - len(todo)


def set_head_from_features(backbone, features: np.ndarray, labels: np.ndarray, n_classes: int) -> float:
    """Fit the regression (`vistune.data.label_issues.linear_head`), write it into the classifier layer; returns
    its train accuracy."""
    from threadpoolctl import threadpool_limits

    from vistune.data.label_issues import linear_head

    if len(np.unique(labels)) != n_classes:
        raise ConfigError("train.head_init=features needs train images of every class; set train.head_init to random")
    probe = linear_head()
    with threadpool_limits(1):
        probe.fit(features, labels)
    scaler, lr = probe[0], probe[-1]
    coef, bias = lr.coef_, lr.intercept_
    if n_classes == 2:  # one logit z for class 1: logits (-z/2, z/2) give the same softmax
        coef, bias = np.vstack([-coef / 2, coef / 2]), np.array([-bias[0] / 2, bias[0] / 2])
    weight = coef / scaler.scale_
    head = backbone.head_module()
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight).to(head.weight.dtype))
        head.bias.copy_(torch.from_numpy(bias - weight @ scaler.mean_).to(head.bias.dtype))
    return float(probe.score(features, labels))
