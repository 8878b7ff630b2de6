"""Which labelled images look mislabelled? Confident learning on out-of-sample probabilities.

Probabilities: K-fold `cross_val_predict` of a logistic regression on frozen-backbone features, so
every image is scored by a head that never saw its label (`out_of_sample_probs`).
Rule (Northcutt, Jiang & Chuang, "Confident Learning", JAIR 2021, the `confident_learning` filter):
- per-class threshold t_j = mean predicted p_j over the images labelled j (the class's average
  self-confidence);
- an image labelled i is counted in the confident joint at (i, j), where j is its most probable class
  among those with p_j >= t_j; an image with no such class is not counted;
- off-diagonal entries (j != i) are the label issues, `suggested` = j.
Ranked by normalized margin (p_given - max other p, the "normalized_margin" order of the paper's
code): `score` = (max other p - p_given + 1) / 2 in [0, 1], higher = more suspicious; above 0.5 the
head prefers another class. Written here on scikit-learn, not taken from cleanlab (AGPL-3.0);
benchmarks/label_issues.py compares the flags with cleanlab's on the same probabilities.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from vistune.data.features import FeatureSpec, embed_files


@dataclass(frozen=True)
class LabelIssues:
    """Per image, in input order: flagged, the class the rule suggests, and the suspicion score."""

    flagged: np.ndarray  # bool
    suggested: np.ndarray  # int class index (= given where not flagged)
    score: np.ndarray  # float in [0, 1], higher = more suspicious
    thresholds: np.ndarray  # per-class average self-confidence

    def ranked(self) -> np.ndarray:
        """Indices of the flagged images, most suspicious first (ties: input order)."""
        idx = np.flatnonzero(self.flagged)
        return idx[np.argsort(-self.score[idx], kind="stable")]


def linear_head():
    """The linear head every frozen-feature fit here uses (label issues, `init`'s probe check, `train.head_init:
    features`): standardized features into an L2 logistic regression (lbfgs, C=0.1: on digits' features it
    flagged half as many images as C=1 at the same held-out accuracy). Fit it under `threadpool_limits(1)`: on
    the loaded 2-core machine a 2-thread fit took 20 s, a 1-thread one 0.2 s."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))


def out_of_sample_probs(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """N x C probabilities, each row from the fold whose training part left that image out (`linear_head`),
    stratified folds shuffled by `seed`. `folds` is capped at the smallest class count (at least 2 images a
    class needed)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    k = min(folds, int(np.bincount(labels).min()))
    if k < 2:
        raise ValueError("every class needs at least 2 labelled images for out-of-sample probabilities")
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    with threadpool_limits(1):
        return cross_val_predict(linear_head(), features, labels, cv=cv, method="predict_proba")


def confident_learning(labels: np.ndarray, probs: np.ndarray) -> LabelIssues:
    """Off-diagonal entries of the confident joint (module docstring), scored by normalized margin."""
    n, c = probs.shape
    rows = np.arange(n)
    self_conf = probs[rows, labels]
    thresholds = np.array([self_conf[labels == j].mean() if (labels == j).any() else 1.0 for j in range(c)])
    above = probs >= thresholds[None, :] - 1e-12  # cleanlab's tolerance for a p equal to its threshold
    confident = np.where(above, probs, -1.0).argmax(axis=1)
    counted = above.any(axis=1)
    flagged = counted & (confident != labels)
    others = probs.copy()
    others[rows, labels] = -np.inf
    score = (others.max(axis=1) - self_conf + 1.0) / 2.0 if c > 1 else np.zeros(n)
    suggested = np.where(flagged, confident, labels)
    return LabelIssues(flagged, suggested, score, thresholds)


def find_label_issues(
    features: np.ndarray, labels: np.ndarray, folds: int, seed: int = 0, rounds: int = 1
) -> LabelIssues:
    """`confident_learning` on out-of-sample probabilities, repeated `rounds` times on the images the earlier
    rounds kept: the first round's head learnt from the flipped labels too, and a refit without the flagged ones
    finds more of the rest. Each image keeps the score (and suggestion) of the round that scored it last.
    Measured with leaf-held-out plantvillage_potato and cub_warblers (benchmarks/label_issues.py, RESULTS.md):
    a second round brought the linear head trained after `exclude` within a point of the clean-label head
    (10% flips: 0.974 -> 0.975 of 0.979, 0.853 -> 0.856 of 0.862; 5%: 0.968 -> 0.973, 0.859 -> 0.862)."""
    flagged = np.zeros(len(labels), dtype=bool)
    suggested, score = labels.copy(), np.zeros(len(labels))
    n_classes = int(labels.max()) + 1
    kept, thresholds = np.arange(len(labels)), np.ones(n_classes)
    for _ in range(rounds):
        if np.bincount(labels[kept], minlength=n_classes).min() < 2:  # a class the rounds emptied: stop
            break
        issues = confident_learning(labels[kept], out_of_sample_probs(features[kept], labels[kept], folds, seed))
        score[kept], suggested[kept], thresholds = issues.score, issues.suggested, issues.thresholds
        flagged[kept[issues.flagged]] = True
        kept = kept[~issues.flagged]
        if not issues.flagged.any():
            break
    return LabelIssues(flagged, suggested, score, thresholds)


TABLE_COLUMNS = ["path", "given_label", "suggested_label", "score"]


@dataclass(frozen=True)
class LabelReview:
    """The flagged images, most suspicious first (`label_issues.csv`), and what it took to find them."""

    table: pd.DataFrame  # TABLE_COLUMNS + split
    n_checked: int  # labelled images scored
    n_embedded: int  # forward passes this run (the rest came from the feature cache)
    seconds_embed: float
    seconds_rank: float


def review_labels(
    root: Path,
    paths: Sequence[str],
    splits: Sequence[str],
    labels: Sequence[str],
    shas: Sequence[str],
    spec: FeatureSpec,
    folds: int,
    seed: int = 0,
    cache_path: Path | None = None,
    rounds: int = 1,
) -> LabelReview:
    """Features (cached by sha256) -> K-fold probabilities -> confident learning, for these images."""
    t0 = time.perf_counter()
    feats, n_new = embed_files([root / p for p in paths], shas, spec, cache_path)
    return review_features(paths, splits, labels, feats, folds, seed, rounds, n_new, time.perf_counter() - t0)


def review_features(
    paths: Sequence[str],
    splits: Sequence[str],
    labels: Sequence[str],
    feats: np.ndarray,
    folds: int,
    seed: int = 0,
    rounds: int = 1,
    n_embedded: int = 0,
    seconds_embed: float = 0.0,
) -> LabelReview:
    """K-fold probabilities -> confident learning on features already embedded (validate shares them)."""
    classes = sorted(set(labels))
    y = np.array([classes.index(label) for label in labels], dtype=np.int64)
    t1 = time.perf_counter()
    issues = find_label_issues(feats, y, folds, seed, rounds)
    order = issues.ranked()
    table = pd.DataFrame(
        {
            "path": [paths[i] for i in order],
            "split": [splits[i] for i in order],
            "given_label": [labels[i] for i in order],
            "suggested_label": [classes[issues.suggested[i]] for i in order],
            "score": np.round(issues.score[order], 6),
        }
    )[[*TABLE_COLUMNS, "split"]]
    return LabelReview(table, len(paths), n_embedded, seconds_embed, time.perf_counter() - t1)


def empty_table() -> pd.DataFrame:
    return pd.DataFrame(columns=[*TABLE_COLUMNS, "split"])
