"""validate keeps its manifest on disk part by part (bounded memory); its files must be exactly what
the whole-table route gives: build_manifest -> mark_duplicates -> the GX suite -> each row's first failure."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from integrations.expectations import run_suite
from stages import validate
from tests.stages.test_validate import build_corpus, corpus_cfg
from vistune.data import manifest as manifest_mod
from vistune.data.dataquality import leak_messages, mark_duplicates
from vistune.data.manifest import build_manifest
from vistune.layout import Layout


def whole_table(cfg, lay: Layout) -> tuple[str, list[tuple], list[str]]:
    """(manifest.csv text, quarantined (path, split, label, code, reason), warnings) from one in-memory table."""
    m = build_manifest(lay.raw, max_pixels=cfg.max_pixels, workers=cfg.workers)
    m = mark_duplicates(m, cfg.near_duplicate_distance, cfg.near_duplicate_min_side)
    m["lookalike_of"] = None  # no features given: the look-alike search does not run
    warn_codes = validate._warn_codes(cfg)
    found, warned = {}, {}
    for oc in run_suite(m, cfg).outcomes:
        for i in oc.unexpected_index:
            (warned if oc.code in warn_codes else found).setdefault(i, oc)
    reason = {i: validate._reason(oc, m.iloc[i].to_dict()) for i, oc in {**warned, **found}.items()}
    bad = [(*m.loc[i, ["path", "split", "label"]], found[i].code, reason[i]) for i in sorted(found)]
    rows = [validate._warning(m.loc[i], warned[i].code, reason[i]) for i in sorted(set(warned) - set(found))]
    _, _, leak_warnings = leak_messages(m, cfg.max_leaked_fraction, cfg.max_leaked)
    return m.drop(index=sorted(found)).reset_index(drop=True).to_csv(index=False), bad, leak_warnings + rows


@pytest.mark.parametrize(
    "policy", [{}, {"on_duplicate": "warn", "on_extension_mismatch": "warn"}], ids=["quarantine", "warn"]
)
def test_streamed_outputs_equal_the_whole_table(tmp_path: Path, monkeypatch, policy) -> None:
    lay = Layout(tmp_path / "repo")
    build_corpus(lay.raw, tmp_path / "outside")
    cfg = dataclasses.replace(corpus_cfg(), **policy)
    want_csv, want_bad, want_warnings = whole_table(cfg, lay)
    monkeypatch.setattr(manifest_mod, "ROWS_PER_CHUNK", 5)  # many parts: duplicate groups span them
    result = validate.run(cfg, lay)
    assert lay.manifest.read_text(encoding="utf-8") == want_csv
    q = pd.read_csv(lay.quarantine, dtype=str, keep_default_na=False)
    assert [tuple(r) for r in q.itertuples(index=False)] == want_bad
    assert result.warnings[: len(want_warnings)] == want_warnings
    assert result.summary["n_good"] == len(result.good) == want_csv.count("\n") - 1
    # the decode cache, written part by part, has each distinct file once (the exact copy shares its digest)
    text = lay.decode_cache.read_text()
    digests = {s for s in build_manifest(lay.raw, max_pixels=cfg.max_pixels, workers=2).sha256 if s}
    assert set(json.loads(text)["facts"]) == digests and text.count('"decoded":') == len(digests)
