"""The GX suite: each rule flags exactly the rows it is about, and Data Docs are built."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from integrations.expectations import QUARANTINE_CODES, row_rules, run_suite
from vistune.config import ValidateCfg


def good_row(i: int) -> dict:
    return {
        "path": f"train/a/{i}.png",
        "split": "train",
        "label": "a",
        "exists": True,
        "readable": True,
        "name_ok": True,
        "within_root": True,
        "bytes": 100,
        "identified": True,
        "pixels": 1024,
        "corrupt": False,
        "decodable": True,
        "error": "",
        "format": "PNG",
        "extension_mismatch": False,
        "mode": "RGB",
        "width": 32,
        "height": 32,
        "aspect": 1.0,
        "leak_of": None,
        "exact_dup_of": None,
        "near_dup_of": None,
    }


BREAKS = {  # code -> how one row breaks it
    "missing": {"exists": False},
    "unreadable": {"readable": False},
    "unsafe_name": {"name_ok": False},
    "outside_root": {"within_root": False},
    "empty": {"bytes": 0},
    "not_image": {"identified": False},
    "bomb": {"pixels": 10**9},
    "corrupt": {"corrupt": True},
    "undecodable": {"decodable": False},
    "format": {"format": "GIF"},
    "extension": {"extension_mismatch": True},
    "mode": {"mode": "F"},
    "size": {"width": 4},
    "aspect": {"aspect": 50.0},
    "no_label": {"label": None},
    "leakage": {"leak_of": "train/a/0.png"},
    "duplicate": {"exact_dup_of": "train/a/0.png"},
    "near_duplicate": {"near_dup_of": "train/a/0.png"},
}


def test_each_rule_flags_only_its_row(tmp_path: Path) -> None:
    cfg = ValidateCfg(allowed_formats=("PNG",))
    rows = [good_row(0)] + [{**good_row(i + 1), **change} for i, change in enumerate(BREAKS.values())]
    manifest = pd.DataFrame(rows)
    outcome = run_suite(manifest, cfg, docs_dir=tmp_path / "docs")
    assert not outcome.success
    flagged = {}
    for oc in outcome.outcomes:
        for i in oc.unexpected_index:
            flagged.setdefault(oc.code, set()).add(i)
    assert flagged == {code: {i + 1} for i, code in enumerate(BREAKS)}
    assert {r.code for r in row_rules(cfg)} <= set(QUARANTINE_CODES)
    assert outcome.docs_index is not None and outcome.docs_index.is_file()
    assert run_suite(pd.DataFrame([good_row(0), good_row(1)]), cfg).success


def test_default_accepts_every_format_and_flags_mismatched_names() -> None:
    rows = [{**good_row(i), "format": f} for i, f in enumerate(["GIF", "AVIF", "MPO", "ICO", "PSD"])]
    rows.append({**good_row(9), "extension_mismatch": True})
    outcome = run_suite(pd.DataFrame(rows), ValidateCfg())
    flagged = {oc.code: oc.unexpected_index for oc in outcome.outcomes if oc.unexpected_index}
    assert flagged == {"extension": [5]}  # the stage decides whether this only warns
    assert "format" not in {r.code for r in row_rules(ValidateCfg())}
