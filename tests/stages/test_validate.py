"""Stage `validate` on a corpus of every kind of bad file mixed into good digits and photos, and on the real
odd files of tests/data/odd_images under each policy (formats, extension mismatch, checksums, leakage)."""

from __future__ import annotations

import dataclasses
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

from tests.conftest import HYMENOPTERA, tree_hash
from tests.vistune.test_imageio import HAS_AVIF, ODD, ODD_DIR, png_header_only
from stages import validate
from vistune.config import ValidateCfg, parse_params
from vistune.errors import ConfigError, DataError
from vistune.layout import Layout

PHOTOS = sorted((HYMENOPTERA / "train" / "ants").glob("*.jpg"))[:4]
ALL_MODES = ValidateCfg().allowed_modes


def save(img: Image.Image, path: Path, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt, **kw)
    return path


def digit(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8))


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def build_corpus(raw: Path, outside: Path) -> dict[str, str]:
    """Good images in every split/class plus one bad file per failure kind; returns path -> code."""
    seed = 0
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        for label in ("a", "b"):
            for k in range(n):
                seed += 1
                save(digit(seed), raw / split / label / f"digit_{k}.png")
    a = raw / "train" / "a"
    for photo in PHOTOS[:2]:
        shutil.copyfile(photo, a / photo.name)
    rgb = Image.fromarray(np.random.default_rng(99).integers(0, 255, (40, 40, 3), dtype=np.uint8))

    # accepted modes, normalized to RGB by to_rgb
    def other(seed: int) -> Image.Image:  # a distinct picture per file, so none is a near duplicate
        return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 40, 3), dtype=np.uint8))

    save(other(1).convert("L"), a / "gray.png")
    save(other(2).convert("P"), a / "palette.png")
    save(other(3).convert("RGBA"), a / "rgba.png")
    save(other(4).convert("CMYK"), a / "cmyk.jpg")
    save(Image.fromarray((np.arange(1600).reshape(40, 40) * 40).astype(np.uint16)), a / "sixteen_bit.png")
    exif = Image.Exif()
    exif[0x0112] = 8
    save(other(5), a / "exif_rotated.jpg", exif=exif.tobytes())

    bad = {}
    b = raw / "train" / "b"

    def add(rel: str, code: str, data: bytes | None = None) -> Path:
        p = raw / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if data is not None:
            p.write_bytes(data)
        bad[rel] = code
        return p

    add("train/b/empty.jpg", "empty", b"")
    add("train/b/notes.jpg", "not_image", b"this is a text file, not a JPEG\n")
    shutil.copyfile(HYMENOPTERA / "train" / "ants" / "imageNotFound.gif", add("train/b/imageNotFound.gif", "format"))
    photo = PHOTOS[2].read_bytes()
    add("train/b/truncated.jpg", "undecodable", photo[: len(photo) // 2])
    png = io.BytesIO()
    rgb.resize((64, 64)).save(png, format="PNG")
    add("train/b/truncated.png", "undecodable", png.getvalue()[: len(png.getvalue()) // 2])
    add("train/b/png_inside.jpg", "extension", png.getvalue())
    add("train/b/bomb_header.png", "bomb", png_header_only(100_000, 100_000))
    save(Image.new("1", (2000, 1500)), add("train/b/bomb_limit.png", "bomb"))  # 3 MP > max_pixels below
    save(rgb.resize((4, 4)), add("train/b/tiny.png", "size"))
    save(rgb.resize((400, 20)), add("train/b/banner.png", "aspect"))
    save(rgb.convert("LA"), add("train/b/gray_alpha.png", "mode"))  # LA taken out of allowed_modes below
    shutil.copyfile(PHOTOS[0], add("train/b/exact_copy.jpg", "duplicate"))  # same split as train/a's copy
    near = Image.open(PHOTOS[1])
    add(
        "train/b/near_copy.jpg",
        "near_duplicate",
        jpeg_bytes(near.resize((near.width * 3 // 4, near.height * 3 // 4)), quality=60),
    )
    shutil.copyfile(PHOTOS[0], add(f"val/a/{PHOTOS[0].name}", "leakage"))
    save(rgb, outside / "secret.png")
    add("train/b/escape.png", "outside_root").symlink_to(outside / "secret.png")
    with open(os.fsencode(b) + b"/bad_\xff_name.png", "wb") as f:
        f.write(png.getvalue())
    bad["train/b/bad_\\xff_name.png"] = "unsafe_name"
    save(rgb, add("train/b/vanishes.png", "missing"))
    return bad


def corpus_cfg(**kw) -> ValidateCfg:
    base = dict(
        min_images_per_class=2,
        max_bad_fraction=0.9,
        max_pixels=2_000_000,
        max_leaked_fraction=0.5,
        allowed_modes=tuple(m for m in ALL_MODES if m != "LA"),
        workers=2,
        allowed_formats=("PNG", "JPEG"),
        on_extension_mismatch="quarantine",
    )
    return ValidateCfg(**{**base, **kw})


def test_every_bad_file_is_quarantined_with_its_reason(tmp_path: Path) -> None:
    lay = Layout(tmp_path / "repo")
    bad = build_corpus(lay.raw, tmp_path / "outside")
    before = tree_hash(lay.raw)
    vanishing, parked = lay.raw / "train" / "b" / "vanishes.png", tmp_path / "parked.png"

    def move_away(path: Path) -> None:  # the file is listed, then gone when read
        if path == vanishing:
            os.replace(vanishing, parked)

    result = validate.run(corpus_cfg(), lay, before_read=move_away)
    os.replace(parked, vanishing)
    assert tree_hash(lay.raw) == before, "validate modified the raw folder"

    q = pd.read_csv(lay.quarantine).set_index("path")
    assert q.code.to_dict() == bad
    assert q.reason.notna().all() and not q.reason.str.contains("\n").any()
    assert (
        "100000x100000" in q.loc["train/b/bomb_header.png", "reason"]
        or "10000000000" in q.loc["train/b/bomb_header.png", "reason"]
    )
    assert q.loc["train/b/exact_copy.jpg", "reason"] == f"exact duplicate of train/a/{PHOTOS[0].name}"
    assert q.loc[f"val/a/{PHOTOS[0].name}", "reason"].startswith(f"same image as train/a/{PHOTOS[0].name}")

    good = pd.read_csv(lay.manifest, dtype={"label": str})
    n_listed = sum(1 for p in lay.raw.rglob("*") if p.is_file() or p.is_symlink())
    assert len(good) == n_listed - len(bad) and not set(good.path) & set(bad)
    assert {"gray.png", "palette.png", "rgba.png", "cmyk.jpg", "sixteen_bit.png", "exif_rotated.jpg"} <= {
        Path(p).name for p in good.path
    }
    summary = json.loads(lay.validation_summary.read_text())
    assert summary == result.summary and summary["n_quarantined"] == len(bad)
    assert summary["quarantined_undecodable"] == 2 and summary["quarantined_bomb"] == 2
    assert summary["n_leaked"] == 1 and summary["n_exif_rotated"] == 1
    numeric = {k: v for k, v in summary.items() if k != "train_class_counts"}
    assert all(isinstance(v, (int, float, bool)) for v in numeric.values()), "summary must stay a flat DVC metric"
    assert (lay.validation_docs / "index.html").is_file()

    # rerun: facts come from the decode cache and the outcome is the same
    assert lay.decode_cache.is_file()
    (lay.raw / "train" / "b" / "vanishes.png").unlink()
    bad.pop("train/b/vanishes.png")
    again = validate.run(corpus_cfg(), lay)
    assert again.quarantine.set_index("path").code.to_dict() == bad


def test_policies_fail_with_one_clear_line(tmp_path: Path) -> None:
    lay = Layout(tmp_path / "repo")
    for split in ("train", "val", "test"):
        for label in ("a", "b"):
            for k in range(3):
                save(digit(zlib.crc32(f"{split}/{label}/{k}".encode()) % 10_000), lay.raw / split / label / f"{k}.png")
    shutil.copyfile(PHOTOS[0], lay.raw / "train" / "a" / "photo.jpg")
    shutil.copyfile(PHOTOS[0], lay.raw / "train" / "a" / "photo_copy.jpg")
    cfg = ValidateCfg(min_images_per_class=2, workers=2, max_bad_fraction=0.5)
    assert validate.run(cfg, lay).summary["quarantined_duplicate"] == 1
    warned = validate.run(dataclasses.replace(cfg, on_duplicate="warn"), lay)
    assert warned.quarantine.empty and "photo_copy.jpg" in warned.warnings[0]
    with pytest.raises(DataError, match="on_duplicate=fail"):
        validate.run(dataclasses.replace(cfg, on_duplicate="fail"), lay)
    shutil.copyfile(PHOTOS[0], lay.raw / "test" / "b" / "leaked.jpg")  # 1 of 13 val/test images
    with pytest.raises(
        DataError,
        match=r"copies of images in an earlier split \(> validate.max_leaked_fraction=0.05\)"
        r".*test/b/leaked.jpg -> train/a/photo.jpg",
    ) as err:
        validate.run(cfg, lay)
    assert "\n" not in str(err.value) and str(lay.quarantine) in str(err.value)
    assert pd.read_csv(lay.quarantine).set_index("path").loc["test/b/leaked.jpg", "code"] == "leakage"
    with pytest.raises(DataError, match="more than|are bad"):
        validate.run(dataclasses.replace(cfg, max_bad_fraction=0.01), lay)
    (lay.raw / "test" / "b" / "leaked.jpg").unlink()
    for f in (lay.raw / "val" / "b").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="'val' lacks classes \\['b'\\]"):
        validate.run(cfg, lay)


def digits_tree(raw: Path, per_class: int) -> None:
    for split in ("train", "val", "test"):
        for label in ("a", "b"):
            for k in range(per_class):
                save(digit(zlib.crc32(f"{split}/{label}/{k}".encode()) % 100_000), raw / split / label / f"{k}.png")


# near duplicates off: several corpus files show the same portrait (hopper), which is not what these tests are about;
# max_aspect 30: png_padded_idat.png is 256x10
ODD_CFG = dict(min_images_per_class=2, max_bad_fraction=0.9, near_duplicate_distance=-1, max_aspect=30.0, workers=2)


def odd_layout(tmp_path: Path) -> Layout:
    """Good digits in every split plus every corpus file in train/a."""
    lay = Layout(tmp_path / "repo")
    digits_tree(lay.raw, 3)
    for name in ODD:
        shutil.copyfile(ODD_DIR / name, lay.raw / "train" / "a" / name)
    return lay


def expected(*, quarantine_mismatch: bool = False, formats: tuple[str, ...] = ()) -> dict[str, str]:
    """path -> code the policy must quarantine, from the corpus table (independent of the stage's rules)."""
    out = {}
    for name, want in ODD.items():
        if name.endswith(".avif") and not HAS_AVIF:
            out[f"train/a/{name}"] = "not_image"
        elif isinstance(want, str):
            out[f"train/a/{name}"] = want
        elif formats and want[0] not in formats:
            out[f"train/a/{name}"] = "format"
        elif quarantine_mismatch and name in ("png_named.jpg", "jpeg_named.png"):
            out[f"train/a/{name}"] = "extension"
    return out


def test_odd_real_files_default_policy_accepts_what_pillow_decodes(tmp_path: Path) -> None:
    lay = odd_layout(tmp_path)
    result = validate.run(ValidateCfg(**ODD_CFG), lay)
    q = pd.read_csv(lay.quarantine).set_index("path")
    assert q.code.to_dict() == expected()
    assert "corrupt although its pixels load" in q.loc["train/a/png_idat_crc.png", "reason"]
    good = pd.read_csv(lay.manifest, dtype={"label": str}).set_index("path")
    kept = {f"train/a/{n}" for n, want in ODD.items() if not isinstance(want, str) and (HAS_AVIF or "avif" not in n)}
    assert kept <= set(good.index)
    assert set(good.index[good.extension_mismatch]) == {"train/a/png_named.jpg", "train/a/jpeg_named.png"}
    assert any("png_named.jpg: content is PNG but the name ends .jpg; rename it to .png" in w for w in result.warnings)
    assert any(
        "jpeg_named.png: content is JPEG but the name ends .png; rename it to .jpg" in w for w in result.warnings
    )
    s = result.summary
    assert s["quarantined_corrupt"] == 3 and s["quarantined_undecodable"] == 3 and s["n_extension_mismatch"] == 2


def test_odd_real_files_under_narrowing_policies(tmp_path: Path) -> None:
    lay = odd_layout(tmp_path)
    strict = ValidateCfg(**ODD_CFG, on_extension_mismatch="quarantine")
    assert validate.run(strict, lay).quarantine.set_index("path").code.to_dict() == expected(quarantine_mismatch=True)
    narrow = ValidateCfg(**ODD_CFG, allowed_formats=("PNG", "JPEG"))
    q = validate.run(narrow, lay).quarantine.set_index("path")
    assert q.code.to_dict() == expected(formats=("PNG", "JPEG"))
    assert (
        "format MPO not allowed (validate.allowed_formats: PNG, JPEG)" in q.loc["train/a/mpo_frame_size.mpo", "reason"]
    )


def test_validate_policy_values_are_checked_with_the_valid_list(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"validate.on_extension_mismatch='rename'.*valid: \['warn', 'quarantine'\]"):
        parse_params({"validate": {"on_extension_mismatch": "rename"}})
    with pytest.raises(ConfigError, match=r"validate.max_leaked_fraction=1.5"):
        parse_params({"validate": {"max_leaked_fraction": 1.5}})
    with pytest.raises(ConfigError, match=r"validate.allowed_formats"):
        parse_params({"validate": {"allowed_formats": ["jpeg"]}})
    assert parse_params({"validate": {"max_leaked": 0}}).validate.max_leaked == 0  # older params files still load
    lay = odd_layout(tmp_path)
    with pytest.raises(ConfigError, match=r"validate.allowed_formats lists \['JPG'\].*'JPEG'"):
        validate.run(ValidateCfg(**ODD_CFG, allowed_formats=("JPG",)), lay)


def test_a_few_leaked_copies_are_quarantined_and_the_stage_passes(tmp_path: Path) -> None:
    lay = Layout(tmp_path / "repo")
    digits_tree(lay.raw, 6)  # 24 val/test images
    shutil.copyfile(PHOTOS[0], lay.raw / "train" / "a" / "photo.jpg")
    shutil.copyfile(PHOTOS[0], lay.raw / "val" / "a" / "leaked.jpg")  # 1 of 25 val/test = 4% <= 5%
    cfg = ValidateCfg(min_images_per_class=2, workers=2)
    result = validate.run(cfg, lay)
    assert result.quarantine.set_index("path").code.to_dict() == {"val/a/leaked.jpg": "leakage"}
    assert "val/a/leaked.jpg -> train/a/photo.jpg" in result.warnings[0]
    assert result.summary["leaked_fraction"] == 0.04 and result.summary["bad_fraction"] == 0.0
    near = Image.open(PHOTOS[0])
    (lay.raw / "test" / "b" / "resaved.jpg").write_bytes(
        jpeg_bytes(near.resize((near.width // 2, near.height // 2)), quality=70)
    )  # a near copy: 2 of 26 = 7.7%
    with pytest.raises(DataError, match=r"2 val/test image\(s\) \(7.7% of 26\).*so the split looks broken") as err:
        validate.run(cfg, lay)
    assert "test/b/resaved.jpg -> train/a/photo.jpg" in str(err.value)
    assert "val/a/leaked.jpg -> train/a/photo.jpg" in str(err.value)
    assert pd.read_csv(lay.quarantine).code.tolist() == ["leakage", "leakage"]
    assert validate.run(dataclasses.replace(cfg, max_leaked_fraction=0.1), lay).summary["n_leaked"] == 2
