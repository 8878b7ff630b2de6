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

import numpy as np
import pandas as pd

from vistune.data.phash import pairs_within
from vistune.data.sources.common import SPLITS


def _ranked(manifest: pd.DataFrame, mask: pd.Series) -> pd.DataFrame:
    rank = manifest.split.map({s: i for i, s in enumerate(SPLITS)}).fillna(len(SPLITS))
    return manifest[mask].assign(_rank=rank[mask]).sort_values(["_rank", "path"], kind="stable")


def mark_duplicates(manifest: pd.DataFrame, near_distance: int, near_min_side: int) -> pd.DataFrame:
    """Add `leak_of`, `exact_dup_of`, `near_dup_of` (path of the kept copy, or None).

    Exact = same sha256. Near = pHash Hamming distance <= `near_distance` (negative disables), only
    for images whose short side is >= `near_min_side`: a perceptual hash of an 8x8 digit upscaled
    to 32x32 collides for genuinely different images.
    """
    out = manifest.copy()
    for col in ("leak_of", "exact_dup_of", "near_dup_of"):
        out[col] = None
    candidates = out.decodable.fillna(False).astype(bool) & (out.sha256.fillna("") != "")

    def mark(keeper: pd.Series, idx: int, same_col: str) -> None:
        col = same_col if out.at[idx, "split"] == keeper["split"] else "leak_of"
        out.at[idx, col] = keeper["path"]

    ranked = _ranked(out, candidates)
    for _, group in ranked.groupby("sha256", sort=False):
        if len(group) > 1:
            keeper = group.iloc[0]
            for idx in group.index[1:]:
                mark(keeper, idx, "exact_dup_of")

    if near_distance >= 0:
        short_side = np.minimum(out.width.fillna(0), out.height.fillna(0))
        near_ok = candidates & (short_side >= near_min_side) & out.leak_of.isna() & out.exact_dup_of.isna()
        ranked = _ranked(out, near_ok)
        hashes = np.array([int(h, 16) for h in ranked.phash], dtype=np.uint64)
        marked: set[int] = set()
        for i, j, _ in pairs_within(hashes, near_distance):
            if i in marked or j in marked:
                continue  # i is itself a copy; j is compared against kept images only
            mark(ranked.iloc[i], ranked.index[j], "near_dup_of")
            marked.add(j)
    return out


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
