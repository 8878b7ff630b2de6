"""Drift against the champion, end to end: a real model registered in a temp MLflow store, real
digit scans through the real `validate` stage. A colour inversion or a strong blur of digits is
detected; a fresh sample of digits the model never saw is not flagged; no champion = skipped."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageFilter

from stages import validate
from vistune.config import parse_params, to_dict
from vistune.layout import Layout

from tests.conftest import tiny_params_dict
from tests.integrations.registry_helpers import register
from tests.integrations.score_helpers import FRESH, write_digits


@pytest.fixture(scope="module")
def store(trained_tiny: Layout, tmp_path_factory):
    """(params whose register section points at a store with trained_tiny as champion, tmp dir)."""
    tmp = tmp_path_factory.mktemp("drift")
    p = parse_params(tiny_params_dict())
    cfg = dataclasses.replace(
        p.register, tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}", artifact_root=str(tmp / "artifacts")
    )
    assert register(trained_tiny, tmp / "lay", cfg)["promoted"]
    return dataclasses.replace(p, register=cfg), tmp


def write_splits(raw: Path, transform=None) -> None:
    """The fresh digits as an ingested dataset: 60/20/20 train/val/test."""
    fresh = list(FRESH)
    for split, part in (
        ("val", fresh[0::5]),
        ("test", fresh[1::5]),
        ("train", [i for k, i in enumerate(fresh) if k % 5 > 1]),
    ):
        write_digits(raw, part, transform, split=split)


def _validate(params, root: Path, transform=None) -> dict:
    lay = Layout(root)
    write_splits(lay.raw, transform)
    result = validate.run(params.validate, lay)
    validate.check_drift(params, lay, result.good)
    return json.loads(lay.drift.read_text())


def test_fresh_digits_are_not_flagged(store, tmp_path):
    params, _ = store
    d = _validate(params, tmp_path)
    assert d["status"] == "compared" and d["reference"] == "vistune-classifier v1 (champion)"
    assert not d["drifted"] and d["drift_score"] <= params.validate.drift_threshold
    assert {"classes_p", "brightness_p", "mode_p", "features_p"} <= set(d)  # every test ran, features included
    assert d["n_new"] == len(FRESH)


@pytest.mark.parametrize(
    "shift",
    [lambda im: Image.eval(im, lambda v: 255 - v), lambda im: im.filter(ImageFilter.GaussianBlur(1.5))],
    ids=["invert", "blur"],
)
def test_inverted_or_blurred_digits_are_flagged(store, tmp_path, shift):
    params, _ = store
    d = _validate(params, tmp_path, shift)
    assert d["drifted"] and d["drift_score"] > params.validate.drift_threshold
    assert d["features_p"] < 0.01  # the embeddings see it, not only the pixel statistics


def test_on_drift_fail_stops_the_stage_with_one_line(store, tmp_path, capsys):
    params, _ = store
    write_splits(Layout(tmp_path).raw, lambda im: Image.eval(im, lambda v: 255 - v))
    raw = to_dict(params)
    raw["validate"]["on_drift"] = "fail"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert validate.main(["--params", str(tmp_path / "params.yaml"), "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "drifted from the champion's training data" in err and "Traceback" not in err
    assert json.loads(Layout(tmp_path).drift.read_text())["drifted"] is True


def test_no_champion_yet_skips_without_creating_a_store(tmp_path):
    p = parse_params(tiny_params_dict())
    params = dataclasses.replace(
        p, register=dataclasses.replace(p.register, tracking_uri=f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}")
    )
    d = _validate(params, tmp_path)
    assert d["status"] == "skipped" and "no champion" in d["reason"] and not d["drifted"]
    assert not (tmp_path / "none" / "mlflow.db").exists()


def test_a_drift_report_older_than_the_gates_champion_is_marked_stale():
    from integrations.champion import drift_staleness

    skipped = {"status": "skipped", "reason": "no champion of vistune-classifier in the registry yet"}
    assert drift_staleness(skipped, "1") == (
        "stale: drift was not measured (no champion of vistune-classifier in the registry yet) when validate ran; "
        "the gate compared with champion v1; `dvc repro --force validate` measures it against v1"
    )
    compared = {"status": "compared", "reference": "vistune-classifier v1 (champion)"}
    assert drift_staleness(compared, "1") is None
    assert drift_staleness(compared, "2").startswith("stale: drift was measured against v1 when validate ran")
    assert drift_staleness(skipped, None) is None and drift_staleness(None, "1") is None


def test_the_card_shows_the_staleness_first(tmp_path):
    import json

    from app import card
    from vistune.layout import Layout

    lay = Layout(tmp_path)
    (lay.data / "validated").mkdir(parents=True)
    (lay.data / "validated" / "drift.json").write_text(
        json.dumps({"status": "skipped", "reason": "no champion of m in the registry yet", "drifted": False})
    )
    shown = card.drift(lay, "1")
    assert list(shown)[0] == "stale" and "the gate compared with champion v1" in shown["stale"]
    assert "stale" not in card.drift(lay, None)


def test_register_writes_which_champion_drift_was_measured_against(store, trained_tiny, tmp_path):
    """The real `register` stage beside a cached `validate`: data/register/drift.json (a DVC metric)
    names the champion drift was measured against and says stale when the gate compared with another."""
    from integrations import champion
    from stages import register as register_stage

    from tests.integrations.registry_helpers import copy_layout, params_with

    params, _ = store  # v1 is champion
    gate_only = params_with(params.register, gate_test="none")
    before = dataclasses.replace(  # validate ran before any champion existed (an empty store)
        params,
        register=dataclasses.replace(params.register, tracking_uri=f"sqlite:///{tmp_path / 'empty' / 'mlflow.db'}"),
    )
    old = copy_layout(trained_tiny, tmp_path / "old", macro_f1=0.01)
    validate.check_drift(before, old)
    assert json.loads(old.drift.read_text())["status"] == "skipped"
    assert not register_stage.run(gate_only, old)["promoted"]  # the gate compared with v1
    assert json.loads(old.register_drift.read_text()) == {
        "drift_reference_version": None,
        "drift_gate_champion": 1,
        "drift_stale": True,
    }

    fresh = copy_layout(trained_tiny, tmp_path / "fresh", macro_f1=0.02)
    validate.check_drift(params, fresh)  # measured against v1, the champion the gate compares with
    receipt = register_stage.run(gate_only, fresh)
    assert receipt["champion_before"] == "1" and not receipt["promoted"]
    assert json.loads(fresh.register_drift.read_text()) == champion.drift_check(
        json.loads(fresh.drift.read_text()), "1"
    )
    assert json.loads(fresh.register_drift.read_text())["drift_reference_version"] == 1
    assert json.loads(fresh.register_drift.read_text())["drift_stale"] is False
