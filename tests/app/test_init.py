"""`vistune init SOURCE` on small generated photo sets: the report, the recipe it writes, idempotency,
bad sources. Real files (PIL-drawn JPEGs), the real CLI entry point, a copy of the real params.yaml."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw

from app import cli
from vistune.config import load_params, to_dict

REPO = Path(__file__).resolve().parents[2]
SHAPES = ("circle", "square", "triangle")


def _photo(rng: np.random.Generator, shape: str, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A textured background (random gradient + noise) with one coloured shape: photo-like, and no
    two images alike (distinct pHashes), so nothing is a near duplicate."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = (
        rng.uniform(40, 200, 3) + rng.uniform(-0.5, 0.5, 3) * xx[..., None] + rng.uniform(-0.5, 0.5, 3) * yy[..., None]
    )
    img = Image.fromarray(np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    cx, cy, r = rng.integers(40, w - 40), rng.integers(35, h - 35), int(rng.integers(18, 32))
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    if shape == "circle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif shape == "square":
        d.rectangle((cx - r, cy - r, cx + r, cy + r), fill=colour)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    return img


def make_photos(root: Path, per_split: dict[str, int], classes=SHAPES, seed: int = 0, shuffled: bool = False) -> Path:
    """ImageFolder of drawn shapes, one class per shape; `shuffled`: each image's shape drawn at random, so the
    folder names no longer say what is in the picture (a set nothing can separate)."""
    rng = np.random.default_rng(seed)
    for split, n in per_split.items():
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                shape = SHAPES[rng.integers(len(SHAPES))] if shuffled else c
                _photo(rng, shape).save(root / split / c / f"{c}_{i:03d}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """One generated set for the module: `init` only reads it (seeded, so every test saw these same files before)."""
    return make_photos(tmp_path_factory.mktemp("photos") / "photos", {"train": 8, "val": 4})


def _fresh_params(folder: Path) -> Path:
    dest = folder / "repo" / "params.yaml"
    dest.parent.mkdir(parents=True)
    shutil.copy(REPO / "params.yaml", dest)
    return dest


@pytest.fixture
def params(tmp_path: Path) -> Path:
    return _fresh_params(tmp_path)


def _init(params: Path, *args: str) -> int:
    return cli.main(["init", *args, "--params", str(params)])


@pytest.fixture(scope="module")
def first_init(photos, tmp_path_factory) -> tuple[Path, str, str]:
    """One real `vistune init photos` on a fresh copy of params.yaml, shared by the tests that read what one
    run printed and wrote (it embeds the sample with three backbones: the slow part of this module).
    Returns (params path, the file's text before, what init printed); the tests only read it."""
    params = _fresh_params(tmp_path_factory.mktemp("first_init"))
    before_text = params.read_text()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = _init(params, str(photos))
    assert code == 0, out.getvalue()
    return params, before_text, out.getvalue()


def _flat(path: Path) -> dict:
    return {f"{s}.{k}": v for s, d in to_dict(load_params(path)).items() for k, v in d.items()}


def _shown(value) -> str:
    return "[" + ", ".join(_shown(v) for v in value) + "]" if isinstance(value, (list, tuple)) else str(value)


CHANGE = re.compile(r"^  (\w+\.\w+): (.*) -> (.*?)  \((.*)\)$")


def test_init_writes_a_photo_recipe_it_printed_and_keeps_comments(photos, first_init, tmp_path):
    params, before_text, out = first_init
    (tmp_path / "before.yaml").write_text(before_text)
    before = _flat(tmp_path / "before.yaml")
    after = _flat(params)  # parses with the project's own loader (unknown keys / bad types would fail)
    # the report: images per class and split (the test split carved from val/ by data.seed)
    assert re.search(r"circle\s+8\s+\d+\s+\d+", out) and "36 images, 3 classes" in out
    assert "formats: JPEG 36" in out and "looks like: photos" in out
    # exactly the printed changes were made, with the printed values
    printed = {m.group(1): (m.group(2), m.group(3)) for m in map(CHANGE.match, out.splitlines()) if m}
    changed = {k for k in after if after[k] != before[k]}
    assert set(printed) == changed and changed
    for key in changed:
        assert printed[key] == (_shown(before[key]), _shown(after[key])), key
    # measured on the data: a frozen probe at the images' own size (128) and the native one (224); both separate
    # the shapes, so the smaller size and the probe are chosen
    measured = dict(re.findall(r"^\s+(\d+) px: accuracy ([0-9.]+)", out, re.M))
    assert set(measured) == {"128", "224"} and float(measured["128"]) >= float(measured["224"]) - 0.01
    assert after["augment.image_size"] == 128 and after["train.strategy"] == "linear_probe"
    # the head alone: every offline backbone's features scored on the same sample; the best (the cheapest on a tie)
    scores = {m: float(a) for m, a in re.findall(r"^\s+(timm:\S+) at 128 px: accuracy ([0-9.]+)", out, re.M)}
    assert len(scores) == 3 and after["train.model"] in scores
    best = max(scores.values())
    assert after["train.model"] == next(m for m in sorted(scores, key=lambda m: m[-1]) if scores[m] == best)
    # a photo recipe: flips, crops, light jitter, no salt-and-pepper
    assert after["augment.hflip"] == 0.5
    assert after["augment.salt_pepper"] == 0.0 and after["augment.scale"][0] < 0.7
    assert 0 < after["augment.brightness"] <= 0.3
    assert after["train.model"].startswith("timm:tf_efficientnet_lite")
    assert (params.parent / after["data.source"]).resolve() == photos.resolve()
    # every comment of the original file is still there, on the line of its key
    after_text = params.read_text()
    for line in before_text.splitlines():
        if line.lstrip().startswith("#"):
            assert line in after_text.splitlines()
        elif "#" in line:
            key = line.split("#")[0].split(":")[0].strip()
            comment = line[line.index("#") :]
            assert any(comment in row and row.split(":")[0].strip() == key for row in after_text.splitlines()), line
    assert len(after_text.splitlines()) == len(before_text.splitlines())


def test_a_set_the_frozen_probe_cannot_separate_is_fine_tuned(tmp_path, params, capsys):
    """Folder names unrelated to the pictures: the probe is near chance, so about half of 2 x FT_MIN_PER_CLASS
    train images would stay wrong (>= FT_MIN_ERRORS) and init fine-tunes; the printed measurement is the one the
    rule used."""
    from vistune.recipe import FT_MIN_ERRORS, FT_MIN_PER_CLASS

    n = FT_MIN_PER_CLASS
    src = make_photos(tmp_path / "noise", {"train": n, "val": 4}, classes=SHAPES[:2], shuffled=True)
    assert _init(params, str(src)) == 0
    out = capsys.readouterr().out
    accuracy = dict(re.findall(r"^\s+(\d+) px: accuracy ([0-9.]+)", out, re.M))
    used = re.search(r"a frozen probe scored ([0-9.]+) at (\d+) px", out)
    assert used and used.group(1) == accuracy[used.group(2)]
    assert load_params(params).train.strategy == "full"
    assert 2 * n * (1 - float(used.group(1))) >= FT_MIN_ERRORS


def test_estimate_is_the_cost_model_of_the_written_recipe(photos, first_init):
    """The printed estimate is `estimate_seconds` of exactly the backbone, size, epochs and strategy written
    (a busy CPU only adds a note scaled by its measured slowdown)."""
    import dataclasses

    from vistune.data.inspect import inspect_source
    from vistune.recipe import CPU_COSTS, estimate_seconds

    params, _, out = first_init
    quiet = re.search(r"estimated ([0-9.]+) min for the whole", out)
    busy = re.search(r"it runs ([0-9.]+)x slower now \(~([0-9]+) min if that lasts\)", out)
    chosen = load_params(params)
    cost = next(c for c in CPU_COSTS if c.spec == chosen.train.model)
    profile = inspect_source(dataclasses.replace(chosen.data, source=str(photos)), chosen.validate)
    probe = chosen.train.strategy == "linear_probe"
    seconds = estimate_seconds(cost, chosen.augment.image_size, chosen.train.epochs, profile, 2, probe)
    assert float(quiet.group(1)) == pytest.approx(seconds / 60, abs=0.051)
    if busy:
        assert int(busy.group(2)) == pytest.approx(seconds / 60 * float(busy.group(1)), abs=0.6)


def test_second_init_is_idempotent(photos, first_init, tmp_path, capsys):
    """A second init where the first ran (a copy of its folder: the written params.yaml and init's feature cache).
    The copy sits as deep under pytest's base temp folder as the original, so the relative data.source init
    wrote still names the photos."""
    params = tmp_path / "repo" / "params.yaml"
    shutil.copytree(first_init[0].parent, params.parent)
    first = params.read_bytes()
    assert _init(params, str(photos)) == 0
    out = capsys.readouterr().out
    assert "no changes" in out and not [row for row in out.splitlines() if CHANGE.match(row)]
    assert params.read_bytes() == first


@pytest.fixture
def warm_params(first_init, params) -> Path:
    """A fresh params.yaml beside a copy of the first init's feature cache (same photos, same rows): for tests
    about what init writes and prints, not about embedding."""
    shutil.copytree(first_init[0].parent / ".run", params.parent / ".run")
    return params


def test_dry_run_writes_nothing_and_pins_win(photos, warm_params, capsys):
    params = warm_params
    before = params.read_bytes()
    assert _init(params, str(photos), "--dry-run", "--set", "augment.salt_pepper=0.02") == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "augment.hflip: 0.0 -> 0.5" in out
    assert "augment.salt_pepper" not in out  # the committed value already is the pinned one
    assert params.read_bytes() == before
    assert _init(params, str(photos), "--set", "augment.salt_pepper=0.02") == 0
    assert load_params(params).augment.salt_pepper == 0.02


def test_the_estimate_follows_pinned_epochs(photos, warm_params, capsys):
    """A pinned value is what will run, so the printed estimate is the cost model of the params with the pin."""
    params = warm_params
    assert _init(params, str(photos), "--dry-run") == 0
    chosen = float(re.search(r"estimated ([0-9.]+) min for the whole", capsys.readouterr().out).group(1))
    assert _init(params, str(photos), "--dry-run", "--set", "train.epochs=1") == 0
    pinned = float(re.search(r"estimated ([0-9.]+) min for the whole", capsys.readouterr().out).group(1))
    assert pinned < chosen


def test_odd_format_placeholder_is_left_to_quarantine(tmp_path, params, capsys):
    """One GIF among >100 JPEGs (hymenoptera's imageNotFound.gif): allowed_formats narrowed to the set's.
    Most JPEGs lie in val/: init's backbone checks embed a sample of train/ only, so they stay as cheap here
    as in the other tests while the share is counted over every image."""
    root = make_photos(tmp_path / "many", {"train": 8, "val": 28})
    Image.new("P", (300, 300), 3).save(root / "train" / "circle" / "imageNotFound.gif")
    assert _init(params, str(root)) == 0
    out = capsys.readouterr().out
    assert "GIF 1" in out and "validate.allowed_formats" in out
    assert load_params(params).validate.allowed_formats == ("JPEG",)


def _one_class(tmp_path: Path) -> Path:
    root = make_photos(tmp_path / "one", {"train": 3, "val": 2}, classes=("cats",))
    return root


def _train_only(tmp_path: Path) -> Path:
    return make_photos(tmp_path / "half", {"train": 2})


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda t: t / "nope", "no such file or directory"),
        (_empty, "no images found"),
        (_one_class, "only one class ('cats')"),
        (_train_only, "without a sibling val/"),
    ],
)
def test_bad_sources_give_one_line_and_exit_2(tmp_path, params, capsys, make, message):
    before = params.read_bytes()
    assert _init(params, str(make(tmp_path))) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vistune init: error:") and message in lines[0], captured.err
    assert "Traceback" not in captured.err + captured.out
    assert params.read_bytes() == before


def test_bad_pin_and_budget_are_one_line(photos, params, capsys):
    assert _init(params, str(photos), "--set", "augment.nope=1") == 2
    assert "expected SECTION.KEY=VALUE" in capsys.readouterr().err
    assert _init(params, str(photos), "--minutes", "0") == 2
    assert "positive number of minutes" in capsys.readouterr().err


def test_recipe_file_reads_the_same_with_pyyaml(first_init):
    """DVC and load_params read params.yaml with YAML 1.1 rules: floats like the LR must stay floats."""
    raw = yaml.safe_load(first_init[0].read_text())
    assert isinstance(raw["train"]["lr"], float) and isinstance(raw["train"]["min_lr"], float)


def test_params_file_edits_keep_comments_and_yaml11_types():
    from integrations.params_file import apply_settings, yaml11_float

    text = "a:\n  x: 1        # keep me\nb:\n  y: [1, 2]\n"
    assert apply_settings(text, []) is text
    out = apply_settings(text, [("a.lr", 1e-05), ("b.y", (0.35, 1.0)), ("a.x", 2)])
    assert yaml.safe_load(out) == {"a": {"x": 2, "lr": 1e-05}, "b": {"y": [0.35, 1.0]}}
    assert "  x: 2        # keep me\n" in out and "y: [0.35, 1.0]" in out
    assert [yaml11_float(v) for v in (1e-05, 1e20, 0.0005, 2.0)] == ["1.0e-05", "1.0e+20", "0.0005", "2.0"]
