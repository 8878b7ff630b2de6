"""Checks that look across rows: duplicates, split leakage, class balance, drift.

Row facts come from `vistune.data.manifest`; this module adds the cross-row columns (`leak_of`,
`exact_dup_of`, `near_dup_of`) that `validate` then checks as expectations, and the dataset-level
findings (class sets per split, small classes, imbalance, how much of val/test leaked) as plain
lists of messages.

Which copy is kept: rows are ranked train < val < test, then by path. The first of a group is
kept; a later copy in the same split is a duplicate, a copy in another split is leakage (so the
train copy always survives and val/test stay clean).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from vistune.data.phash import pairs_within
from vistune.data.sources.common import SPLITS


DUPLICATE_COLUMNS = ("leak_of", "exact_dup_of", "near_dup_of")


def _rank_sorted(rows: np.ndarray, split: np.ndarray, paths_of: Callable[[np.ndarray], list]) -> list:
    """(row, path) of `rows` in keeping order: train < val < test (others last), then by path."""
    rank = {s: i for i, s in enumerate(SPLITS)}
    paths = paths_of(rows)
    return sorted(zip(rows.tolist(), paths), key=lambda rp: (rank.get(split[rp[0]], len(SPLITS)), rp[1]))


def duplicate_marks(split: np.ndarray, sha: np.ndarray, phash: np.ndarray, candidates: np.ndarray,
                    short_side: np.ndarray, paths_of: Callable[[np.ndarray], list], near_distance: int,
                    near_min_side: int) -> dict[str, dict[int, str]]:
    """Column (`DUPLICATE_COLUMNS`) -> {row: path of the kept copy}, from compact arrays (one entry
    a file: sha256, uint64 pHash, short side); `paths_of(rows)` is asked only for the rows that are
    in a duplicate group or a near pair, so no path per file is held. See `mark_duplicates`."""
    marks: dict[str, dict[int, str]] = {c: {} for c in DUPLICATE_COLUMNS}

    def mark(keeper: tuple[int, str], row: int, same_col: str) -> None:
        marks[same_col if split[row] == split[keeper[0]] else "leak_of"][row] = keeper[1]

    cand = np.flatnonzero(candidates)
    _, inverse, counts = np.unique(sha[cand], return_inverse=True, return_counts=True)
    keepers: dict = {}
    for row, path in _rank_sorted(cand[counts[inverse] > 1], split, paths_of):
        if sha[row] in keepers:
            mark(keepers[sha[row]], row, "exact_dup_of")
        else:
            keepers[sha[row]] = (row, path)
    if near_distance < 0:
        return marks
    copies = np.zeros(len(split), dtype=bool)
    copies[list(marks["leak_of"]) + list(marks["exact_dup_of"])] = True
    rows = np.flatnonzero(candidates & (short_side >= near_min_side) & ~copies)
    pairs = pairs_within(phash[rows], near_distance)
    if not pairs:
        return marks
    ranked = _rank_sorted(rows[np.unique(np.array([(i, j) for i, j, _ in pairs]))], split, paths_of)
    position = {row: k for k, (row, _) in enumerate(ranked)}
    ordered = sorted(tuple(sorted((position[rows[i]], position[rows[j]]))) for i, j, _ in pairs)
    marked: set[int] = set()
    for a, b in ordered:  # the keeping order, i-then-j, as the all-rows ranked search made them
        if a in marked or b in marked:
            continue  # a is itself a copy; b is compared against kept images only
        mark(ranked[a], ranked[b][0], "near_dup_of")
        marked.add(b)
    return marks


def mark_duplicates(manifest: pd.DataFrame, near_distance: int, near_min_side: int) -> pd.DataFrame:
    """Add `leak_of`, `exact_dup_of`, `near_dup_of` (path of the kept copy, or None).

    Exact = same sha256. Near = pHash Hamming distance <= `near_distance` (negative disables), only
    for images whose short side is >= `near_min_side`: a perceptual hash of an 8x8 digit upscaled
    to 32x32 collides for genuinely different images.
    """
    out = manifest.copy()
    sha = out.sha256.fillna("").astype(str).to_numpy()
    candidates = out.decodable.fillna(False).astype(bool).to_numpy() & (sha != "")
    hashes = np.array([int(h, 16) if ok else 0 for h, ok in zip(out.phash, candidates)], dtype=np.uint64)
    short_side = np.minimum(out.width.fillna(0), out.height.fillna(0)).to_numpy()
    paths = out.path.to_numpy()
    marks = duplicate_marks(out.split.to_numpy(), sha, hashes, candidates, short_side,
                            lambda rows: paths[rows].tolist(), near_distance, near_min_side)
    for col in DUPLICATE_COLUMNS:
        out[col] = marked_column(len(out), marks[col])
    return out


def marked_column(n: int, marks: dict[int, str]) -> np.ndarray:
    """An object column of n rows: the kept copy's path where marked, None elsewhere."""
    col = np.full(n, None, dtype=object)
    if marks:
        col[list(marks)] = list(marks.values())
    return col


LEAK_EXAMPLES = 5  # pairs named in a leakage message


def leak_messages(manifest: pd.DataFrame, max_fraction: float, max_count: int = -1) -> tuple[float, list[str], list[str]]:
    """(leaked share of val+test, errors, warnings) for rows marked `leak_of` by `mark_duplicates`.

    The copies are quarantined from val/test either way, so a few leaks only warn; a share above
    `max_fraction` (or a count above `max_count`, when >= 0) means the split itself is broken.
    Each message names the first pairs as `leaked path -> kept path`.
    """
    leaked = manifest[manifest.leak_of.notna()]
    n_held_out = int(manifest.split.isin(SPLITS[1:]).sum())
    fraction = round(len(leaked) / n_held_out, 6) if n_held_out else 0.0
    if leaked.empty:
        return fraction, [], []
    pairs = ", ".join(f"{r.path} -> {r.leak_of}" for r in leaked.head(LEAK_EXAMPLES).itertuples())
    more = f" (first {LEAK_EXAMPLES} of {len(leaked)})" if len(leaked) > LEAK_EXAMPLES else ""
    what = (f"{len(leaked)} val/test image(s) ({fraction:.1%} of {n_held_out}) are copies of images in an "
            f"earlier split")
    over = [f"validate.max_leaked_fraction={max_fraction}"] if fraction > max_fraction else []
    over += [f"validate.max_leaked={max_count}"] if 0 <= max_count < len(leaked) else []
    if over:
        return fraction, [f"{what} (> {' and '.join(over)}), so the split looks broken: {pairs}{more}; "
                          f"re-split the source so each image is in one split"], []
    return fraction, [], [f"{what}, quarantined from val/test (leakage): {pairs}{more}"]


@dataclass
class DatasetFindings:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    class_counts: dict[str, int] = field(default_factory=dict)  # train images per class
    imbalance_ratio: float = 0.0  # largest / smallest train class


def dataset_findings(good: pd.DataFrame, min_images_per_class: int, max_imbalance_ratio: float) -> DatasetFindings:
    """Every split non-empty with the same classes; small classes; class imbalance."""
    f = DatasetFindings()
    classes = {s: set(good.loc[good.split == s, "label"]) for s in SPLITS}
    every = set().union(*classes.values())
    for split in SPLITS:
        if not classes[split]:
            f.errors.append(f"split {split!r} has no valid images")
            continue
        missing = sorted(every - classes[split])
        if missing:
            f.errors.append(f"split {split!r} lacks classes {missing}")
    counts = good[good.split == "train"].label.value_counts()
    f.class_counts = {str(k): int(v) for k, v in sorted(counts.items())}
    small = sorted(str(c) for c in counts[counts < min_images_per_class].index)
    if small:
        f.errors.append(f"train classes with fewer than {min_images_per_class} images "
                        f"(validate.min_images_per_class): {small}")
    if len(counts):
        f.imbalance_ratio = round(float(counts.max()) / float(max(counts.min(), 1)), 4)
        if f.imbalance_ratio > max_imbalance_ratio:
            f.warnings.append(f"class imbalance {f.imbalance_ratio:.1f}x (largest/smallest train class) > "
                              f"validate.max_imbalance_ratio={max_imbalance_ratio}; consider class weighting "
                              f"or more images for {counts.idxmin()!r}")
    return f
