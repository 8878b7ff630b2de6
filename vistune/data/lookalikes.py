"""Another shot of a train photo in val or test: the same object in two splits, which pHash cannot see.

Pooled ImageNet features put photos of one class close together, so their raw cosine similarity does not
tell "the same leaf" from "the same disease". Two steps turn them into an object test (measured on four
photo sets with `benchmarks/lookalikes.py`, figures in benchmarks/RESULTS.md):

1. **Within-class whitening.** Each class's train mean is removed and the residuals are whitened by a PCA
   fitted on train (`n_train // 8` components, scikit-learn's `PCA(whiten=True)`). What remains is what
   tells objects of one class apart, with no direction dominating.
2. **A threshold calibrated on known different objects.** Two train images of different classes show two
   different objects. For a sample of train images, the nearest train image *of another class* gives the
   similarity (and the lead over the next `GAP_K` neighbours) that different objects reach. A val/test
   image is flagged when its nearest train image *of its own class* is both closer than `TOP_PERCENTILE`
   of those and stands out from its next neighbours more than `GAP_PERCENTILE` of them.

Only numpy and scikit-learn: the features come from `vistune.data.features` (validate's cache).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOP_PERCENTILE = 99.5  # of the cross-class nearest similarities: how close different objects get
GAP_PERCENTILE = 98.0  # of their lead over the next GAP_K neighbours: how much a nearest pair stands out
GAP_K = 5
IMAGES_PER_COMPONENT = 8  # whitening components = n_train // 8 (more overfits small sets, fewer blurs objects)
CALIBRATION_ROWS = 2000  # train images whose cross-class neighbours set the thresholds (seeded sample)
BLOCK = 512  # query rows per similarity block: memory stays ~BLOCK x n_train floats


@dataclass(frozen=True)
class Lookalikes:
    """Flagged query rows, each one's train partner (indices into the features given) and their similarity."""

    n_checked: int  # non-train rows of a class train has: the ones compared
    rows: np.ndarray
    partners: np.ndarray
    similarity: np.ndarray
    threshold: float  # NaN when the check could not run (too few train images or classes)
    gap_threshold: float


def _none(n_checked: int) -> Lookalikes:
    empty = np.zeros(0, dtype=np.int64)
    return Lookalikes(n_checked, empty, empty, np.zeros(0, dtype=np.float32), float("nan"), float("nan"))


def whiten_within_class(features: np.ndarray, labels: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Rows minus their class's train mean, PCA-whitened on the train rows, unit length."""
    from sklearn.decomposition import PCA

    x = features.astype(np.float64, copy=True)
    for label in np.unique(labels[train]):
        x[labels == label] -= x[train][labels[train] == label].mean(axis=0)
    n_components = max(1, min(len(train) // IMAGES_PER_COMPONENT, x.shape[1]))
    z = PCA(n_components=n_components, whiten=True, random_state=0).fit(x[train]).transform(x)
    return (z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _nearest(
    z: np.ndarray, queries: np.ndarray, keys: np.ndarray, labels: np.ndarray, same: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query row: (its nearest key row of the same class (`same`) or another class, the similarity,
    its lead over the mean of the next GAP_K). A query is never its own key: calibration compares train rows
    with other classes only, the check compares val/test rows with train rows."""
    partner = np.zeros(len(queries), dtype=np.int64)
    top = np.full(len(queries), -np.inf, dtype=np.float32)
    gap = np.zeros(len(queries), dtype=np.float32)
    for start in range(0, len(queries), BLOCK):
        q = queries[start : start + BLOCK]
        sim = z[q] @ z[keys].T
        match = labels[q][:, None] == labels[keys][None, :]
        sim[~match if same else match] = -np.inf
        k = min(GAP_K + 1, sim.shape[1])
        best = -np.sort(-np.partition(sim, sim.shape[1] - k, axis=1)[:, -k:], axis=1)
        finite = np.isfinite(best[:, 1:])
        n_rest = finite.sum(axis=1)
        rest_mean = np.where(finite, best[:, 1:], 0.0).sum(axis=1) / np.maximum(n_rest, 1)
        partner[start : start + BLOCK] = keys[sim.argmax(axis=1)]
        top[start : start + BLOCK] = best[:, 0]
        gap[start : start + BLOCK] = np.where(n_rest > 0, best[:, 0] - rest_mean, 0.0)  # no neighbours: no lead
    return partner, top, gap


def find_lookalikes(features: np.ndarray, labels, is_train, seed: int = 0) -> Lookalikes:
    """Flag the non-train rows whose nearest same-class train row looks like the same object (module doc)."""
    labels, is_train = np.asarray(labels), np.asarray(is_train, dtype=bool)
    train, other = np.flatnonzero(is_train), np.flatnonzero(~is_train)
    other = other[np.isin(labels[other], labels[train])]
    if len(train) < 2 * GAP_K or not len(other) or len(np.unique(labels[train])) < 2:
        return _none(len(other))
    z = whiten_within_class(features, labels, train)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(train, size=min(CALIBRATION_ROWS, len(train)), replace=False))
    _, c_top, c_gap = _nearest(z, sample, train, labels, same=False)
    ok = np.isfinite(c_top) & np.isfinite(c_gap)
    threshold = float(np.percentile(c_top[ok], TOP_PERCENTILE))
    gap_threshold = float(np.percentile(c_gap[ok], GAP_PERCENTILE))
    partner, top, gap = _nearest(z, other, train, labels, same=True)
    flag = (top > threshold) & (gap > gap_threshold)
    return Lookalikes(len(other), other[flag], partner[flag], top[flag], threshold, gap_threshold)
