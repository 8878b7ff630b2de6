"""Label issues: confident learning on known probabilities, and flips in a separable generated photo set
found through the real decoder and the real pretrained backbone (Lite0, offline weights)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from vistune.data.features import FeatureSpec, embed_files
from vistune.data.label_issues import confident_learning, review_labels
from vistune.io import sha256_bytes

LITE0 = FeatureSpec("timm:tf_efficientnet_lite0", "imagenet", "", 64)
HUES = {"red": (200, 40, 40), "green": (40, 170, 60), "blue": (40, 60, 200)}


def colour_photo(label: str, key: str) -> Image.Image:
    """A noisy picture in its class's colour and pattern (red: horizontal stripes, green: vertical
    stripes, blue: a checkerboard), at a random phase: the classes are separable."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    yy, xx = np.mgrid[0:64, 0:64] + rng.integers(0, 16, 2)[:, None, None]
    pattern = {"red": yy // 8 % 2, "green": xx // 8 % 2, "blue": (yy // 8 + xx // 8) % 2}[label]
    img = np.array(HUES[label], dtype=float) * (0.5 + 0.5 * pattern[..., None]) + rng.normal(0, 20, (64, 64, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def photo_set(root: Path, per_class: int) -> tuple[list[str], list[str]]:
    """JPEGs under root/train/<label>/; (paths relative to root, true labels)."""
    paths, labels = [], []
    for label in HUES:
        for k in range(per_class):
            rel = f"train/{label}/{k}.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            colour_photo(label, rel).save(root / rel, quality=90)
            paths.append(rel)
            labels.append(label)
    return paths, labels


def test_confident_joint_flags_the_off_diagonal_and_ranks_by_margin():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array(
        [
            [0.9, 0.1],
            [0.8, 0.2],
            [0.1, 0.9],  # third: labelled 0, confidently 1
            [0.2, 0.8],
            [0.3, 0.7],
            [0.45, 0.55],
        ]
    )
    issues = confident_learning(labels, probs)
    # thresholds: mean p_0 over label 0 = 0.6, mean p_1 over label 1 = 0.683
    np.testing.assert_allclose(issues.thresholds, [0.6, (0.8 + 0.7 + 0.55) / 3])
    assert issues.flagged.tolist() == [False, False, True, False, False, False]  # row 6: p_0 0.45 < 0.6
    assert issues.suggested[2] == 1 and issues.ranked().tolist() == [2]
    assert np.isclose(issues.score[2], (0.9 - 0.1 + 1) / 2) and issues.score[0] < 0.5


def test_flips_in_a_separable_photo_set_are_found_and_a_clean_set_gives_few_flags(tmp_path: Path):
    paths, truth = photo_set(tmp_path, per_class=16)
    shas = [sha256_bytes((tmp_path / p).read_bytes()) for p in paths]
    flipped = {3: "green", 20: "blue", 40: "red", 45: "green"}  # 4 of 48 (8%), one into each other class
    given = [flipped.get(i, t) for i, t in enumerate(truth)]
    splits = ["train"] * len(paths)
    noisy = review_labels(tmp_path, paths, splits, given, shas, LITE0, folds=5, cache_path=tmp_path / "f.npz")
    top = noisy.table.head(len(flipped))
    assert set(top.path) == {paths[i] for i in flipped}, noisy.table
    assert all(top.suggested_label == [truth[paths.index(p)] for p in top.path])
    assert (top.score > 0.5).all() and list(noisy.table.score) == sorted(noisy.table.score, reverse=True)
    assert noisy.n_embedded == len(paths)

    clean = review_labels(tmp_path, paths, splits, truth, shas, LITE0, folds=5, cache_path=tmp_path / "f.npz")
    assert clean.n_embedded == 0  # every feature came from the sha256 cache
    assert len(clean.table) <= 0.05 * len(paths), clean.table


def test_feature_cache_is_keyed_by_content_and_backbone(tmp_path: Path):
    paths, _ = photo_set(tmp_path, per_class=2)
    files = [tmp_path / p for p in paths]
    shas = [sha256_bytes(f.read_bytes()) for f in files]
    cache = tmp_path / "cache.npz"
    first, n = embed_files(files, shas, LITE0, cache)
    again, n_again = embed_files(files[::-1], shas[::-1], LITE0, cache)
    assert (n, n_again) == (len(files), 0) and np.array_equal(first[::-1], again)
    colour_photo("blue", "other").save(files[0], quality=90)  # new content under an old name
    _, n_changed = embed_files(files, [sha256_bytes(f.read_bytes()) for f in files], LITE0, cache)
    assert n_changed == 1
    other_size = FeatureSpec(LITE0.model, LITE0.pretrained, "", 32)
    _, n_other = embed_files(files, shas, other_size, cache)
    assert n_other == len(set(shas))  # another size is another key: recomputed


def test_a_second_round_without_the_flagged_images_finds_more_flips_and_keeps_the_first():
    """Overlapping Gaussian classes with 15% of labels flipped: the refit without round one's flags finds flips
    the first head (which learnt from them) missed; round one's flags stay flagged; a clean set stays clean."""
    from vistune.data.label_issues import find_label_issues

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 200)
    x = rng.normal(0, 1, (600, 16)) + 2.2 * np.eye(3, 16)[y]
    flips = rng.choice(600, 90, replace=False)
    noisy = y.copy()
    noisy[flips] = (y[flips] + rng.integers(1, 3, 90)) % 3
    one = find_label_issues(x, noisy, folds=5, rounds=1)
    two = find_label_issues(x, noisy, folds=5, rounds=2)
    assert (two.flagged >= one.flagged).all() and two.flagged.sum() > one.flagged.sum()
    found = lambda issues: np.isin(flips, np.flatnonzero(issues.flagged)).sum()  # noqa: E731
    assert found(two) > found(one) >= 0.5 * len(flips)
    new = two.flagged & ~one.flagged
    assert np.isin(np.flatnonzero(new), flips).mean() > 0.5  # the extra flags are mostly flips
    assert (two.suggested[flips][two.flagged[flips]] == y[flips][two.flagged[flips]]).mean() > 0.8
    clean = find_label_issues(x[:, :3] * 3, y, folds=5, rounds=2)  # well separated, true labels
    assert clean.flagged.mean() < 0.02
