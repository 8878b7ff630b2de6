"""The manifest's per-file facts (on real odd files too), the decode cache, perceptual hashes, duplicate
marking and the leakage messages."""

from __future__ import annotations

import io
import json
import os
import shutil
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import HYMENOPTERA
from tests.vistune.test_imageio import HAS_AVIF, ODD, ODD_DIR
from vistune.data.dataquality import dataset_findings, leak_messages, mark_duplicates
from vistune.data.manifest import COLUMNS, build_manifest, extension_mismatch, name_is_safe, preferred_extension
from vistune.data.phash import dhash, hamming, pairs_within, phash

ANT = HYMENOPTERA / "train" / "ants" / "0013035.jpg"
BEE = HYMENOPTERA / "train" / "bees" / "1092977343_cb42b38d62.jpg"


def digit_png(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((8, 8), dtype=np.uint8)
    arr[value % 8, :] = 255
    arr[:, (value * 3) % 8] = 128
    Image.fromarray(arr).save(path)
    return path


def small_tree(root: Path) -> Path:
    for split in ("train", "val", "test"):
        for label in ("a", "b"):
            for k in range(2):
                digit_png(root / split / label / f"{k}.png", zlib.crc32(f"{split}/{label}/{k}".encode()) % 97)
    return root


def test_phash_survives_reencoding_and_separates_different_photos() -> None:
    ant = Image.open(ANT).convert("RGB")
    buf = io.BytesIO()
    ant.resize((ant.width * 3 // 4, ant.height * 3 // 4)).save(buf, format="JPEG", quality=50)
    copy = Image.open(buf)
    bee = Image.open(BEE)
    assert hamming(phash(ant), phash(copy)) <= 4
    assert hamming(phash(ant), phash(bee)) > 10
    assert hamming(dhash(ant), dhash(copy)) <= 8


def test_pairs_within_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, 300, dtype=np.uint64)
    hashes[17] = hashes[3] ^ np.uint64(0b101)  # distance 2
    hashes[250] = hashes[3]
    found = pairs_within(hashes, 3, chunk=64)
    brute = [
        (i, j, hamming(int(hashes[i]), int(hashes[j])))
        for i in range(300)
        for j in range(i + 1, 300)
        if hamming(int(hashes[i]), int(hashes[j])) <= 3
    ]
    assert found == brute and (3, 17, 2) in found and (3, 250, 0) in found
    assert pairs_within(hashes, -1) == []


def test_pairs_within_banded_search_equals_the_all_pairs_scan_on_a_large_set() -> None:
    """Above BRUTE_FORCE_BELOW hashes the multi-index (band) search runs: the same pairs, same order,
    for planted near copies, a block of identical hashes and pHashes' constant first bit."""
    from vistune.data.phash import BRUTE_FORCE_BELOW, _brute_force

    rng = np.random.default_rng(1)
    n = BRUTE_FORCE_BELOW + 1000
    hashes = rng.integers(0, 2**63, n, dtype=np.uint64)  # top bit always 0, as pHash's DC bit
    for k, (a, flip) in enumerate([(7, 0b1011), (7, 0), (9, (1 << 62) | 1), (4000, (1 << 40) | (1 << 20) | 2)]):
        hashes[100 + k] = hashes[a] ^ np.uint64(flip)
    hashes[200:240] = hashes[5]
    for d in (0, 2, 4, 6):
        found = pairs_within(hashes, d)
        assert found == _brute_force(hashes, d, 1024), d
    assert (7, 100, 3) in pairs_within(hashes, 4) and len([p for p in found if p[0] == 5]) == 40


def test_manifest_columns_and_a_file_vanishing_mid_run(tmp_path: Path) -> None:
    root = small_tree(tmp_path / "raw")
    gone = root / "val" / "b" / "1.png"
    parked = tmp_path / "parked.png"

    def vanish(path: Path) -> None:
        if path == gone:
            os.replace(gone, parked)  # someone moves the file after it was listed, before it is read

    m = build_manifest(root, max_pixels=10_000, workers=2, before_read=vanish)
    assert list(m.columns) == COLUMNS and len(m) == 12
    row = m.set_index("path").loc["val/b/1.png"]
    assert not row.exists and "disappeared" in row.error
    good = m[m.path != "val/b/1.png"]
    assert (
        good.decodable.all()
        and not good.extension_mismatch.any()
        and (good.pixels == 64).all()
        and (good.aspect == 1.0).all()
    )
    assert good.phash.str.len().eq(16).all() and good.brightness.between(0, 1).all()


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root from reading, so there is nothing to detect")
    root = small_tree(tmp_path / "raw")
    locked = root / "train" / "a" / "0.png"
    locked.chmod(0)
    try:
        m = build_manifest(root, max_pixels=10_000).set_index("path")
    finally:
        locked.chmod(0o644)
    assert not m.loc["train/a/0.png", "readable"]


def test_outside_symlink_is_not_read_and_bad_names_are_flagged(tmp_path: Path) -> None:
    root = small_tree(tmp_path / "raw")
    secret = digit_png(tmp_path / "outside.png", 3)
    (root / "train" / "a" / "link.png").symlink_to(secret)
    (root / "train" / "a" / "inside.png").symlink_to(root / "train" / "b" / "0.png")
    bad_name = os.fsencode(root / "train" / "a") + b"/caf\xe9.png"
    with open(bad_name, "wb") as f:
        f.write((root / "train" / "b" / "1.png").read_bytes())
    m = build_manifest(root, max_pixels=10_000).set_index("path")
    assert not m.loc["train/a/link.png", "within_root"] and m.loc["train/a/link.png", "bytes"] == 0
    assert m.loc["train/a/inside.png", "within_root"] and m.loc["train/a/inside.png", "decodable"]
    assert not m.loc["train/a/caf\\xe9.png", "name_ok"]
    assert not name_is_safe("train/../x.png") and name_is_safe("train/a/ok..png")


def test_decode_cache_is_used_and_follows_the_bytes(tmp_path: Path) -> None:
    root = small_tree(tmp_path / "raw")
    cache = tmp_path / "cache.json"
    first = build_manifest(root, max_pixels=10_000, cache_path=cache)
    stored = json.loads(cache.read_text())
    assert len(stored["facts"]) == first.sha256.nunique()
    # plant a marker in the cache: a rerun must take facts from it instead of decoding
    digest = first.set_index("path").loc["train/a/0.png", "sha256"]
    stored["facts"][digest]["brightness"] = 0.123
    cache.write_text(json.dumps(stored))
    again = build_manifest(root, max_pixels=10_000, cache_path=cache).set_index("path")
    assert again.loc["train/a/0.png", "brightness"] == 0.123
    # a changed file has a new sha256 and is decoded afresh
    shutil.copyfile(ANT, root / "train" / "a" / "0.png")
    changed = build_manifest(root, max_pixels=10_000_000, cache_path=cache).set_index("path")
    assert changed.loc["train/a/0.png", "format"] == "JPEG" and changed.loc["train/a/0.png", "brightness"] != 0.123
    # a bomb first seen under a small limit is cached undecoded, then decoded once the limit is raised
    fresh = tmp_path / "fresh.json"
    bomb = build_manifest(root, max_pixels=1_000, cache_path=fresh).set_index("path")
    assert bomb.loc["train/a/0.png", "pixels"] > 1_000 and not bomb.loc["train/a/0.png", "decodable"]
    raised = build_manifest(root, max_pixels=10_000_000, cache_path=fresh).set_index("path")
    assert raised.loc["train/a/0.png", "decodable"]
    # lowering the limit later keeps the decoded facts; the pixel count still flags it (validate's rule)
    lowered = build_manifest(root, max_pixels=1_000, cache_path=fresh).set_index("path")
    assert lowered.loc["train/a/0.png", "pixels"] > 1_000


def frame(rows: list[tuple[str, str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "path": p,
                "split": s,
                "sha256": h,
                "phash": f"{ph:016x}",
                "decodable": True,
                "width": 64,
                "height": 64,
                "label": "a",
            }
            for p, s, h, ph in rows
        ]
    )


def test_duplicates_keep_the_train_copy_and_mark_leakage() -> None:
    m = frame(
        [
            ("test/a/x.png", "test", "h1", 1),
            ("train/a/z.png", "train", "h1", 1),
            ("train/a/y.png", "train", "h1", 1),
            ("val/a/near.png", "val", "h2", 0b111),
            ("train/a/far.png", "train", "h3", 0xFFFF_FFFF_0000_0000),
            ("train/a/y_near.png", "train", "h4", 0b1),
            ("val/a/alone.png", "val", "h5", 0x00FF_FF00_FFFF_0000),
        ]
    )
    out = mark_duplicates(m, near_distance=4, near_min_side=32).set_index("path")
    assert out.loc["train/a/z.png", "exact_dup_of"] == "train/a/y.png"
    assert out.loc["test/a/x.png", "leak_of"] == "train/a/y.png"
    assert out.loc["train/a/y_near.png", "near_dup_of"] == "train/a/y.png"
    assert out.loc["val/a/near.png", "leak_of"] == "train/a/y.png"
    untouched = ["train/a/y.png", "train/a/far.png", "val/a/alone.png"]
    assert out.loc[untouched, ["leak_of", "exact_dup_of", "near_dup_of"]].isna().all().all()
    small = mark_duplicates(m.assign(width=8, height=8), near_distance=4, near_min_side=32)
    assert small.near_dup_of.isna().all() and small.leak_of.notna().sum() == 1


def test_dataset_findings() -> None:
    good = pd.DataFrame(
        {"split": ["train"] * 23 + ["val", "val", "test"], "label": ["a"] * 20 + ["b"] * 2 + ["c"] + ["a", "b", "a"]}
    )
    f = dataset_findings(good, min_images_per_class=2, max_imbalance_ratio=10)
    assert f.class_counts == {"a": 20, "b": 2, "c": 1} and f.imbalance_ratio == 20.0
    assert any("'val' lacks classes ['c']" in e for e in f.errors)
    assert any("'test' lacks classes ['b', 'c']" in e for e in f.errors)
    assert any("fewer than 2 images" in e and "['c']" in e for e in f.errors)
    assert len(f.warnings) == 1 and "imbalance 20.0x" in f.warnings[0]


def test_odd_real_files_facts(tmp_path: Path) -> None:
    """Each corpus file's row: format, decodable/corrupt as in test_imageio's table, extension checked by name."""
    a = tmp_path / "raw" / "train" / "a"
    a.mkdir(parents=True)
    for name in ODD:
        shutil.copyfile(ODD_DIR / name, a / name)
    shutil.copyfile(ODD_DIR / "mpo_frame_size.mpo", a / "mpo_as_jpeg.jpg")  # what cameras name their MPOs
    shutil.copyfile(ODD_DIR / "jpeg_exif_orientation_6.jpg", a / "no_extension")
    m = build_manifest(tmp_path / "raw", max_pixels=10**7, workers=2).set_index("path")
    for name, want in ODD.items():
        row = m.loc[f"train/a/{name}"]
        if name.endswith(".avif") and not HAS_AVIF:
            continue
        assert bool(row.corrupt) == (want == "corrupt"), name
        assert bool(row.decodable) == (not isinstance(want, str)), name
        if not isinstance(want, str):
            assert row.format == want[0] and (row.height, row.width) == want[1], name
    mismatched = set(m.index[m.extension_mismatch.astype(bool)])
    assert mismatched == {"train/a/png_named.jpg", "train/a/jpeg_named.png", "train/a/no_extension"}
    assert m.loc["train/a/mpo_as_jpeg.jpg", "format"] == "MPO"
    assert m.loc["train/a/jpeg_exif_orientation_6.jpg", "exif_rotated"]
    assert "corrupt although its pixels load" in m.loc["train/a/png_idat_crc.png", "error"]


def test_extension_names_come_from_pillow() -> None:
    assert not extension_mismatch("JPEG", ".JPG") and not extension_mismatch("PNG", ".apng")
    assert not extension_mismatch("MPO", ".jpg") and not extension_mismatch("MPO", ".mpo")
    assert extension_mismatch("PNG", ".jpg") and extension_mismatch("JPEG", "")
    assert not extension_mismatch("IMT", ".anything")  # Pillow registers no name for it: nothing to disagree with
    assert (preferred_extension("JPEG"), preferred_extension("PNG"), preferred_extension("MPO")) == (
        ".jpg",
        ".png",
        ".jpg",
    )


def test_leak_messages_warn_below_the_share_and_name_pairs_above() -> None:
    rows = [("train/a/keep.png", "train", "h1", 1)] + [
        (f"val/a/{k}.png", "val", f"v{k}", 1 << 40 | k) for k in range(19)
    ]
    m = mark_duplicates(frame(rows + [("test/a/copy.png", "test", "h1", 1)]), near_distance=-1, near_min_side=32)
    fraction, errors, warnings = leak_messages(m, max_fraction=0.05)
    assert fraction == 0.05 and not errors  # 1 of 20 val/test images: at the limit, not above
    assert len(warnings) == 1 and "test/a/copy.png -> train/a/keep.png" in warnings[0]
    fraction, errors, warnings = leak_messages(m, max_fraction=0.04)
    assert (
        not warnings and "max_leaked_fraction=0.04" in errors[0] and "test/a/copy.png -> train/a/keep.png" in errors[0]
    )
    _, errors, _ = leak_messages(m, max_fraction=0.5, max_count=0)  # the absolute cap of older params files
    assert "validate.max_leaked=0" in errors[0]
    many = mark_duplicates(frame(rows + [(f"test/a/c{k}.png", "test", "h1", 1) for k in range(7)]), -1, 32)
    _, errors, _ = leak_messages(many, max_fraction=0.05)
    assert errors[0].count(" -> ") == 5 and "(first 5 of 7)" in errors[0]
    assert leak_messages(frame(rows).assign(leak_of=None), 0.05) == (0.0, [], [])


@pytest.mark.timeout(120)
def test_an_explicit_file_list_is_read_once(tmp_path):
    """`files=` (batch scoring's list) is taken a chunk at a time like the folder listing: each file
    gives exactly one row (a list re-sliced from its start would never end)."""
    from vistune.data.manifest import ROWS_PER_CHUNK, build_manifest

    img = tmp_path / "0" / "a.png"
    img.parent.mkdir()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(img)
    files = [(img, "test", "0")] * (ROWS_PER_CHUNK + 3)
    manifest = build_manifest(tmp_path, max_pixels=10_000, workers=2, files=files)
    assert len(manifest) == ROWS_PER_CHUNK + 3 and set(manifest.path) == {"0/a.png"}
