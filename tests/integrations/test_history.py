"""Alias history and rollback (previous champion, champion as of a time) on a real sqlite registry."""

from __future__ import annotations

import json
import time
from datetime import datetime, UTC

import pytest

from app import cli
from integrations import history, registry, tracking

from tests.integrations.registry_helpers import register, write_params_file

NAME = "vistune-classifier"


def _now() -> str:
    t = datetime.now(UTC).isoformat(timespec="microseconds")
    time.sleep(0.01)  # the next event is strictly later
    return t


def _clone(client, version: str) -> str:
    mv = client.get_model_version(NAME, version)
    return str(client.create_model_version(NAME, mv.source, run_id=mv.run_id).version)


def test_history_rollback_and_rollback_to_time(trained_tiny, mlflow_cfg, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("VISTUNE_PREFECT_FLOW_RUN_NAME", raising=False)
    v1 = register(trained_tiny, tmp_path / "a", mlflow_cfg, macro_f1=0.5)["version"]
    client, lock = tracking.open_registry(mlflow_cfg, tmp_path)
    t_v1 = _now()
    v2, v3, v4 = _clone(client, v1), _clone(client, v1), _clone(client, v1)
    monkeypatch.setenv("VISTUNE_PREFECT_FLOW_RUN_NAME", "nightly-otter")
    assert registry.gate(client, NAME, v2, "test_macro_f1", 0.6, 0.0, lock).promoted
    monkeypatch.delenv("VISTUNE_PREFECT_FLOW_RUN_NAME")
    assert not registry.gate(client, NAME, v3, "test_macro_f1", 0.1, 0.0, lock).promoted
    assert registry.promote(client, NAME, v3, lock, reason="hotfix", force=True) == v2
    t_v3 = _now()
    assert not registry.gate(client, NAME, v4, "test_macro_f1", 0.05, 0.0, lock).promoted
    registry.archive(client, NAME, v4, lock)

    assert registry.rollback(client, NAME, lock) == (v3, v2)  # previous champion
    assert registry.rollback(client, NAME, lock) == (v2, v1)  # v3 was rolled back: skipped
    assert registry.rollback(client, NAME, lock, to_time=t_v3) == (v1, v3)  # champion as of t_v3
    assert "vistune.rolled_back" not in client.get_model_version(NAME, v3).tags  # deliberately restored
    assert registry.rollback(client, NAME, lock, to_time=t_v1) == (v3, v1)
    assert registry.alias_version(client, NAME, "champion") == v1

    entries = history.read(client, NAME)
    got = [(e.action, e.alias, e.from_version, e.to_version) for e in entries]
    assert got == [
        ("gate", "challenger", None, v1),
        ("gate", "champion", None, v1),
        ("gate", "challenger", v1, v2),
        ("gate", "champion", v1, v2),
        ("gate", "challenger", v2, v3),
        ("override", "champion", v2, v3),
        ("gate", "challenger", v3, v4),
        ("archive", "challenger", v4, None),
        ("rollback", "champion", v3, v2),
        ("rollback", "champion", v2, v1),
        ("rollback", "champion", v1, v3),
        ("rollback", "champion", v3, v1),
    ]
    assert [e.seq for e in entries] == list(range(1, 13))
    assert [e.time for e in entries] == sorted(e.time for e in entries)
    assert entries[2].actor == entries[3].actor == "flow:nightly-otter"
    assert entries[5].actor.startswith("cli:") and entries[5].reason.startswith("forced: hotfix (overrode: v")
    assert "as of" in entries[10].reason
    # the log is on its registry-log run: the registered model keeps one short tag, the versions table stays up
    model_tags = client.get_registered_model(NAME).tags
    assert list(model_tags) == [history.POINTER] and len(model_tags[history.POINTER]) < 60
    log_run = client.get_run(model_tags[history.POINTER].removeprefix("runs:/"))
    assert client.get_experiment(log_run.info.experiment_id).name == history.LOG_EXPERIMENT
    assert len([k for k in log_run.data.tags if k.startswith(history.PREFIX)]) == 12

    with pytest.raises(ValueError, match="had no champion at"):
        registry.rollback(client, NAME, lock, to_time="2000-01-01T00:00:00")
    with pytest.raises(ValueError, match="was already champion"):
        registry.rollback(client, NAME, lock, to_time=t_v1)
    with pytest.raises(ValueError, match="not ISO-8601"):
        registry.rollback(client, NAME, lock, to_time="yesterday")

    # the CLI: `vistune history` prints the log, `vistune rollback --to-time` uses it
    params = write_params_file(tmp_path / "params.yaml", mlflow_cfg)
    base = ["--params", str(params), "--root", str(tmp_path)]
    capsys.readouterr()
    assert cli.main([*base, "history"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["#", "time", "(UTC)"] and len(out) == 13
    assert "flow:nightly-otter" in out[3] and "hotfix" in out[6]
    assert cli.main([*base, "rollback", "--to-time", t_v3]) == 0
    assert f"v{v1} -> v{v3}" in capsys.readouterr().out
    assert cli.main([*base, "rollback", "--to-time", "never"]) == 2
    assert "not ISO-8601" in capsys.readouterr().err


def test_history_entries_stay_small_and_old_model_tags_move_to_the_log_run(trained_tiny, mlflow_cfg, tmp_path):
    v1 = register(trained_tiny, tmp_path / "a", mlflow_cfg, macro_f1=0.5)["version"]
    client, lock = tracking.open_registry(mlflow_cfg, tmp_path)
    # a store written before the move: entries as registered-model tags, one of them hand-edited
    old = {"time": "2026-01-01T00:00:00+00:00", "actor": "cli:old", "action": "promote", "alias": "champion"}
    client.set_registered_model_tag(NAME, history.PREFIX + "000050", json.dumps({**old, "from": None, "to": v1}))
    client.set_registered_model_tag(NAME, history.PREFIX + "000099", "not json")  # ignored, never fatal
    assert [x.seq for x in history.read(client, NAME)] == [1, 2, 50]
    assert history.read(client, NAME)[-1].actor == "cli:old"
    with registry.registry_lock(lock):
        e = history.append(client, NAME, "champion", v1, v1, "promote", "x" * 10_000, actor="cli:test")
    assert e.seq == 100 and len(e.reason) == history.MAX_REASON
    assert list(client.get_registered_model(NAME).tags) == [history.POINTER]  # moved, not copied
    log_tags = client.get_run(client.get_registered_model(NAME).tags[history.POINTER][len("runs:/") :]).data.tags
    assert len(log_tags[f"{history.PREFIX}000100"]) < 5000 and log_tags[f"{history.PREFIX}000099"] == "not json"
    assert [x.seq for x in history.read(client, NAME)] == [1, 2, 50, 100]
