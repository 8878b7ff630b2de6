"""The statistical gate on real tiny models: champion and challenger re-scored on the same test split."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import pandas as pd
from scipy.stats import binomtest

from app import gate_report
from integrations import registry, tracking
from stages import register as register_stage
from vistune.evaluate import rescore, significance as sig
from vistune.layout import Layout

from tests.integrations.registry_helpers import constant_model, copy_layout, params_with, register

ALPHA = 0.05  # params.yaml's register.gate_alpha, checked below

NAME = "vistune-classifier"


def _scored(model_file, data) -> tuple[np.ndarray, float]:
    """(which test images the model gets right, its macro-F1), scored here with scikit-learn."""
    from sklearn.metrics import f1_score

    pred = gate_report.predict(model_file, data)
    return pred == data.labels, float(f1_score(data.labels, pred, labels=np.unique(data.labels), average="macro"))


def _mcnemar_p(champion: np.ndarray, challenger: np.ndarray) -> float:
    """Exact McNemar p-value, computed here with scipy: the discordant images split 50/50 under H0."""
    gained, lost = int((challenger & ~champion).sum()), int((champion & ~challenger).sum())
    return float(binomtest(gained, gained + lost, 0.5).pvalue)


def test_real_pair_rescored_report_and_verdicts(trained_tiny, probed_tiny, mlflow_cfg, tmp_path):
    cfg = {"gate_test": "mcnemar", "gate_n_boot": 200}
    first = register(trained_tiny, tmp_path / "a", mlflow_cfg, cfg, macro_f1=0.5)
    assert first["promoted"] and first["gate_report"] == "data/registry/gate_report.md"
    assert "No champion comparison" in (tmp_path / "a" / first["gate_report"]).read_text()

    # challenger: a constant model that claims a great macro-F1; the gate re-scores both instead
    data = rescore.load_eval_set(trained_tiny)
    champ_pred = rescore.predict(trained_tiny.model, data)
    cls = (int(np.bincount(champ_pred).argmax()) + 1) % len(data.classes)
    worse = copy_layout(trained_tiny, tmp_path / "b", macro_f1=0.99)
    constant_model(trained_tiny.model, worse.model, cls)
    second = register_stage.run(params_with(mlflow_cfg, **cfg), worse)
    chal_pred = rescore.predict(worse.model, data)
    assert set(chal_pred) == {cls}
    y = data.labels
    k = len(data.classes)
    want_champ, want_chal = (float(sig.macro_f1_rows(y, p, k)[0]) for p in (champ_pred, chal_pred))
    assert not second["promoted"] and "re-scored" in second["reason"]
    assert second["value"] == want_chal and second["champion_value"] == want_champ  # fresh numbers, not 0.99
    client, lock = tracking.open_registry(mlflow_cfg, tmp_path)
    assert registry.alias_version(client, NAME, "champion") == first["version"]

    report = (worse.root / second["gate_report"]).read_text()
    mc = sig.mcnemar(champ_pred == y, chal_pred == y)
    assert f"challenger v{second['version']} vs champion v{first['version']}" in report
    assert f"p = {mc.p_value:.4g}" in report
    lost = np.flatnonzero((champ_pred == y) & (chal_pred != y))
    assert f"newly gets wrong ({len(lost)})" in report
    arts = {a.path for a in client.list_artifacts(second["run_id"], "gate")}
    assert {
        "gate/gate_report.md",
        "gate/gate_metrics.csv",
        "gate/gate_mcnemar.csv",
        "gate/gate_per_class.csv",
        "gate/gate_newly_wrong.csv",
    } <= arts
    newly = pd.read_csv(client.download_artifacts(second["run_id"], "gate/gate_newly_wrong.csv", str(tmp_path)))
    assert list(newly["index"]) == list(lost) and set(newly["challenger_predicted"].astype(str)) <= {data.classes[cls]}
    metrics = pd.read_csv(client.download_artifacts(second["run_id"], "gate/gate_metrics.csv", str(tmp_path)))
    row = metrics.set_index("metric").loc["macro_f1"]
    assert row["delta"] == pytest.approx(want_chal - want_champ) and row["ci_low"] <= row["delta"] <= row["ci_high"]
    facts = registry.version_facts(client, NAME, second["version"])  # the gate's details are on its run
    assert facts["vistune.gate_significance"].startswith("McNemar")

    # an identical model (same weights, another version): "not significant" with p = 1
    same = str(
        client.create_model_version(
            NAME, client.get_model_version(NAME, first["version"]).source, run_id=first["run_id"]
        ).version
    )
    lay_a = tmp_path / "a"
    rcfg = params_with(mlflow_cfg, **cfg).register
    report_md = tmp_path / "same.md"
    compare = gate_report.make_compare(client, rcfg, Layout(lay_a), same, first["run_id"], report_md)
    d = registry.gate(client, NAME, same, "test_macro_f1", 0.5, 0.0, lock, compare=compare)
    assert not d.promoted and d.reason.startswith("no significant difference") and "p=1 " in d.reason
    assert "challenger vs champion: **no significant difference**" in report_md.read_text()
    assert "newly gets wrong (0)" in report_md.read_text()
    # a negative margin says "accept a challenger that is not better": the test is waived
    waived = dataclasses.replace(rcfg, min_improvement=-1.0)
    compare = gate_report.make_compare(client, waived, Layout(lay_a), same, first["run_id"], report_md)
    d = registry.gate(client, NAME, same, "test_macro_f1", 0.5, -1.0, lock, compare=compare)
    assert d.promoted and "not required" in d.significance
    assert json.loads((worse.registration).read_text())["gate_report"] == "data/registry/gate_report.md"

    # a truly better model (other weights: the head refit as a linear probe) claiming a poor macro-F1:
    # McNemar at params.yaml's alpha finds the gain by re-scoring both, and promotes it
    assert (rcfg.gate_test, rcfg.gate_alpha, rcfg.min_improvement) == ("mcnemar", ALPHA, 0.0)
    better = copy_layout(probed_tiny, tmp_path / "p", macro_f1=0.01)
    (champ_ok, champ_f1), (chal_ok, chal_f1) = (_scored(m, data) for m in (trained_tiny.model, better.model))
    want_p = _mcnemar_p(champ_ok, chal_ok)
    assert want_p < ALPHA and chal_f1 > champ_f1  # a real difference, not a coin flip
    third = register_stage.run(params_with(mlflow_cfg, **cfg), better)
    assert third["promoted"] and third["champion_before"] == same, third["reason"]
    assert third["verdict"] == "significantly better" and third["p_value"] == pytest.approx(want_p)
    assert (third["value"], third["champion_value"]) == (pytest.approx(chal_f1), pytest.approx(champ_f1))
    assert registry.alias_version(client, NAME, "champion") == third["version"]


def _scored(model_file, data) -> tuple[np.ndarray, float]:
    """(which test images the model gets right, its macro-F1), scored here with scikit-learn."""
    from sklearn.metrics import f1_score

    pred = gate_report.predict(model_file, data)
    return pred == data.labels, float(f1_score(data.labels, pred, labels=np.unique(data.labels), average="macro"))


def _mcnemar_p(champion: np.ndarray, challenger: np.ndarray) -> float:
    """Exact McNemar p-value, computed here with scipy: the discordant images split 50/50 under H0."""
    gained, lost = int((challenger & ~champion).sum()), int((champion & ~challenger).sum())
    return float(binomtest(gained, gained + lost, 0.5).pvalue)
