"""`train.head_init: features`: the classifier layer set from a logistic regression on the frozen features answers
as that regression does, and the features come from validate's cache when it holds them (real Lite0 weights,
real JPEGs through the real decoder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tests.vistune.test_label_issues import LITE0, photo_set
from vistune.data.features import embed_files
from vistune.io import sha256_bytes
from vistune.models.backbones import create_backbone
from vistune.models.classifier import prepare_images
from vistune.train.head_fit import set_head_from_features, train_features


def _data(tmp_path: Path):
    paths, labels = photo_set(tmp_path, 6)
    classes = sorted(set(labels))
    images = prepare_images([(tmp_path / p).read_bytes() for p in paths], LITE0.image_size)
    shas = [sha256_bytes((tmp_path / p).read_bytes()) for p in paths]
    return paths, shas, images, np.array([classes.index(c) for c in labels]), len(classes)


def test_the_head_set_from_features_answers_as_the_regression(tmp_path):
    paths, shas, images, y, n = _data(tmp_path)
    backbone = create_backbone(LITE0.model, n, pretrained="imagenet")
    random_answers = backbone.net.eval()(torch.from_numpy(images)).argmax(1).numpy()
    feats, from_cache = train_features(backbone, images, None, LITE0, None, torch.device("cpu"))
    assert from_cache == 0 and feats.shape == (len(y), 1280)
    assert set_head_from_features(backbone, feats, y, n) == 1.0  # the shapes are separable on these features
    with torch.no_grad():
        answers = backbone.net.eval()(torch.from_numpy(images)).argmax(1).numpy()
    assert (answers == y).all() and (random_answers != y).any()


def test_two_classes_and_the_cache(tmp_path):
    """Binary regressions have one logit; the head still answers as the regression. Features in validate's cache
    (same backbone, weights and size) are read, not recomputed, and equal the fresh ones."""
    paths, shas, images, y, _ = _data(tmp_path)
    keep = y < 2
    cache = tmp_path / "feature_cache.npz"
    embed_files([tmp_path / p for p, k in zip(paths, keep) if k], [s for s, k in zip(shas, keep) if k], LITE0, cache)
    backbone = create_backbone(LITE0.model, 2, pretrained="imagenet")
    kept_shas = [s for s, k in zip(shas, keep) if k]
    cached, n_cached = train_features(backbone, images[keep], kept_shas, LITE0, cache, torch.device("cpu"))
    fresh, _ = train_features(backbone, images[keep], None, LITE0, None, torch.device("cpu"))
    assert n_cached == keep.sum() and np.array_equal(cached, fresh)
    set_head_from_features(backbone, cached, y[keep], 2)
    with torch.no_grad():
        answers = backbone.net.eval()(torch.from_numpy(images[keep])).argmax(1).numpy()
    assert (answers == y[keep]).all()
