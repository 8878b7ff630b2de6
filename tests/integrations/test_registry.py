"""The promotion gate, thresholds, promote / rollback / archive and racing registrations on a real
sqlite MLflow store, with real tiny models registered by the real `register` stage."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from integrations import lineage, registry, tracking
from vistune.config import RegisterCfg

from tests.integrations.registry_helpers import METRIC_GATE_ONLY, copy_layout, register

NAME = "vistune-classifier"


def _client(cfg: RegisterCfg, root: Path) -> tuple[MlflowClient, Path]:
    return tracking.open_registry(cfg, root)


def _tags(client: MlflowClient, version: str) -> dict:
    """The version's short tag set merged with its run's (where the gate's details are)."""
    return registry.version_facts(client, NAME, version)


def test_gate_accepts_better_and_rejects_worse(trained_tiny, mlflow_cfg, tmp_path):
    r1 = register(trained_tiny, tmp_path / "a", mlflow_cfg, METRIC_GATE_ONLY, macro_f1=0.50)
    r2 = register(trained_tiny, tmp_path / "b", mlflow_cfg, METRIC_GATE_ONLY, macro_f1=0.70)
    client, _ = _client(mlflow_cfg, tmp_path)
    assert r1["promoted"] and r2["promoted"]
    assert registry.alias_version(client, NAME, "champion") == r2["version"]
    assert _tags(client, r2["version"])["vistune.previous_champion"] == r1["version"]

    r3 = register(trained_tiny, tmp_path / "c", mlflow_cfg, METRIC_GATE_ONLY, macro_f1=0.65)
    assert not r3["promoted"] and r3["champion_before"] == r2["version"]
    assert registry.alias_version(client, NAME, "champion") == r2["version"]  # untouched
    assert registry.alias_version(client, NAME, "challenger") == r3["version"]
    mv = client.get_model_version(NAME, r3["version"])
    assert mv.tags["vistune.gate"] == "kept as challenger"
    assert "does not beat champion" in _tags(client, r3["version"])["vistune.decision_reason"]
    assert "gate: kept as challenger" in mv.description and "0.6500" in mv.description
    # the run behind a version carries params, per-epoch metrics, artifacts and tags
    run = client.get_run(mv.run_id)
    assert run.data.params["train.epochs"] == "1" and run.data.metrics["test_macro_f1"] == pytest.approx(0.65)
    assert len(client.get_metric_history(mv.run_id, "val_loss")) >= 1
    arts = {a.path for a in client.list_artifacts(mv.run_id, "evaluate")}
    assert {
        "evaluate/metrics.json",
        "evaluate/robustness.png",
        "evaluate/gradcam.png",
        "evaluate/calibration.json",
    } <= arts
    assert "validate/summary.json" in {a.path for a in client.list_artifacts(mv.run_id, "validate")}
    assert run.data.tags["vistune.lineage.git_commit"] and "vistune.git_commit" not in run.data.tags  # one key per fact
    run_facts = {k: v for k, v in run.data.tags.items() if k.startswith(("vistune.lineage.", "vistune.dvc."))}
    version_facts = lineage.version_lineage(client, mv)  # the version's two lineage tags + its run's
    assert run_facts == version_facts | {"vistune.lineage.params": run_facts["vistune.lineage.params"]}  # same facts
    assert run.inputs.dataset_inputs and run.inputs.dataset_inputs[0].dataset.name == "image_manifest"


def _clone(client: MlflowClient, version: str) -> str:
    """Another registered version of the same real logged model (the gate's input, minus re-logging)."""
    mv = client.get_model_version(NAME, version)
    return str(client.create_model_version(NAME, mv.source, run_id=mv.run_id).version)


def _gate(client, lock, version, f1, min_improvement=0.0, failures=None):
    return registry.gate(client, NAME, version, "test_macro_f1", f1, min_improvement, lock, failures)


def test_min_improvement_margin(trained_tiny, mlflow_cfg, tmp_path):
    v1 = register(trained_tiny, tmp_path / "a", mlflow_cfg, macro_f1=0.50)["version"]
    client, lock = _client(mlflow_cfg, tmp_path)
    v2, v3 = _clone(client, v1), _clone(client, v1)
    assert not _gate(client, lock, v2, 0.54, min_improvement=0.05).promoted
    assert _gate(client, lock, v3, 0.56, min_improvement=0.05).promoted
    assert registry.alias_version(client, NAME, "champion") == v3


def test_thresholds_reject_even_without_champion(trained_tiny, mlflow_cfg, tmp_path):
    r = register(
        trained_tiny,
        tmp_path / "a",
        mlflow_cfg,
        {"max_ece": 0.05, "min_accuracy": 0.9},
        macro_f1=0.99,
        ece=0.2,
        accuracy=0.8,
    )
    client, lock = _client(mlflow_cfg, tmp_path)
    assert not r["promoted"]
    assert registry.alias_version(client, NAME, "champion") is None
    tags = _tags(client, r["version"])
    assert "test_ece 0.2000 > register.max_ece 0.05" in tags["vistune.gate_failures"]
    assert "test_accuracy 0.8000 < register.min_accuracy 0.9" in tags["vistune.gate_failures"]
    assert client.get_run(r["run_id"]).data.metrics["test_ece"] == pytest.approx(0.2)  # a run metric, not a tag
    assert "fails thresholds" in client.get_model_version(NAME, r["version"]).description
    v2 = _clone(client, r["version"])
    cfg = RegisterCfg(max_ece=0.05, min_robust_accuracy=0.3)
    passing = {"test_accuracy": 0.9, "test_ece": 0.01, "test_robust_accuracy": 0.4}
    assert _gate(client, lock, v2, 0.5, failures=registry.threshold_failures(passing, cfg)).promoted


def test_threshold_failures_rules():
    cfg = RegisterCfg(min_accuracy=0.5, max_ece=0.1, min_robust_accuracy=0.2)
    assert registry.threshold_failures({"test_accuracy": 0.6, "test_ece": 0.05, "test_robust_accuracy": 0.3}, cfg) == []
    fails = registry.threshold_failures({"test_accuracy": 0.4, "test_ece": 0.05}, cfg)
    assert fails == [
        "test_accuracy 0.4000 < register.min_accuracy 0.5",
        "test_robust_accuracy not reported but register.min_robust_accuracy=0.2 is set",
    ]
    assert registry.threshold_failures({}, RegisterCfg()) == []  # defaults switch every threshold off


def test_promote_rollback_archive(trained_tiny, mlflow_cfg, tmp_path):
    v1 = register(trained_tiny, tmp_path / "a", mlflow_cfg, macro_f1=0.5)["version"]
    client, lock = _client(mlflow_cfg, tmp_path)
    v2, v3 = _clone(client, v1), _clone(client, v1)
    assert _gate(client, lock, v2, 0.6).promoted and not _gate(client, lock, v3, 0.1).promoted
    assert registry.rollback(client, NAME, lock) == (v2, v1)
    assert registry.alias_version(client, NAME, "champion") == v1
    assert _tags(client, v2)["vistune.rolled_back"] == "true"
    assert "rolled back" in client.get_model_version(NAME, v1).description

    with pytest.raises(
        ValueError,
        match=rf"refused to promote v{v3}: the gate kept it as challenger and it is worse "
        rf"than the champion \(test_macro_f1 0.1000 vs champion v{v1} 0.5000\); to promote anyway",
    ):
        registry.promote(client, NAME, v3, lock, reason="hotfix")
    assert registry.alias_version(client, NAME, "champion") == v1  # refused: nothing moved
    assert registry.promote(client, NAME, v3, lock, reason="hotfix", force=True) == v1
    assert registry.alias_version(client, NAME, "champion") == v3
    assert "hotfix" in client.get_model_version(NAME, v3).description
    with pytest.raises(ValueError, match="is the champion"):
        registry.archive(client, NAME, v3, lock)
    registry.archive(client, NAME, v2, lock)
    mv = client.get_model_version(NAME, v2)
    assert mv.tags["vistune.archived"] == "true" and not mv.aliases
    assert registry.rollback(client, NAME, lock) == (v3, v1)


def test_a_refused_promotion_tells_no_listener_and_a_forced_one_does(trained_tiny, mlflow_cfg, tmp_path):
    """The guard and the champion-change hook together: nothing moved, nothing told; forced, the
    listeners (flows/events.py's `vistune.champion.changed`) hear an `override` with its reason."""
    v1 = register(trained_tiny, tmp_path / "a", mlflow_cfg, macro_f1=0.5)["version"]
    client, lock = _client(mlflow_cfg, tmp_path)
    v2 = _clone(client, v1)
    assert not _gate(client, lock, v2, 0.1).promoted
    heard: list[registry.ChampionChange] = []
    registry.on_champion_change(heard.append)
    try:
        with pytest.raises(ValueError, match=rf"refused to promote v{v2}"):
            registry.promote(client, NAME, v2, lock, reason="hotfix")
        assert heard == []
        assert registry.promote(client, NAME, v2, lock, reason="hotfix", force=True) == v1
    finally:
        registry._LISTENERS.remove(heard.append)
    assert [(c.old, c.new, c.action) for c in heard] == [(v1, v2, "override")]
    assert heard[0].reason.startswith("forced: hotfix (overrode: v")


def test_rollback_without_history_is_a_clear_error(trained_tiny, mlflow_cfg, tmp_path):
    client, lock = _client(mlflow_cfg, tmp_path)
    tracking.setup(mlflow_cfg, tmp_path)
    client.create_registered_model(NAME)
    with pytest.raises(ValueError, match="no champion to roll back"):
        registry.rollback(client, NAME, lock)
    v1 = register(trained_tiny, tmp_path / "a", mlflow_cfg, macro_f1=0.5)["version"]
    with pytest.raises(ValueError, match=f"champion v{v1} .* records no previous champion"):
        registry.rollback(client, NAME, lock)


def test_racing_registrations_end_with_one_champion(trained_tiny, mlflow_cfg, tmp_path):
    """Two `register` stage runs on one store at once, same score: exactly one becomes champion.

    Threads share nothing but the store and the lock file (the lock is a file lock, so the same
    holds across processes); without the lock both read "no champion" and both promote.
    """
    import json
    import threading

    tracking.setup(mlflow_cfg, tmp_path)  # experiment exists up front, as after any earlier run
    layouts = [copy_layout(trained_tiny, tmp_path / f"r{i}", macro_f1=0.5) for i in range(2)]
    from stages import register as register_stage
    from tests.integrations.registry_helpers import params_with

    params = params_with(mlflow_cfg)
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def go(lay):
        try:
            start.wait()
            register_stage.run(params, lay)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(lay,)) for lay in layouts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    receipts = [json.loads(lay.registration.read_text()) for lay in layouts]
    assert sorted(r["promoted"] for r in receipts) == [False, True]
    winner = next(r for r in receipts if r["promoted"])
    loser = next(r for r in receipts if not r["promoted"])
    client, _ = _client(mlflow_cfg, tmp_path)
    versions = client.search_model_versions(f"name='{NAME}'")
    assert len(versions) == 2
    champions = [str(v.version) for v in versions if "champion" in client.get_model_version(NAME, v.version).aliases]
    assert champions == [str(winner["version"])]
    assert str(loser["champion_before"]) == str(winner["version"])  # the loser saw the winner's promotion
