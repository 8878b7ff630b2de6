"""The registry on shared infrastructure: one real `mlflow server` for the module, PostgreSQL backend
store, artifacts served by the server (the deployment of docs/scale-out.md). The `register` stage, the
default McNemar gate, promote / rollback / archive, the alias history and the CLI all talk to it by
its http URL only; results are read back through a fresh client and straight from PostgreSQL's tables.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime, UTC
from pathlib import Path

import pandas as pd
import pytest

from app import cli
from integrations import history, registry, tracking
from stages import register as register_stage
from vistune.config import RegisterCfg, parse_params

from tests.conftest import tiny_params_dict
from tests.integrations.mlflow_server import PostgresMlflowServer
from tests.integrations.registry_helpers import params_with, register, worse_challenger, write_params_file

pytestmark = pytest.mark.slow

GATE_FILES = {
    "gate/gate_report.md",
    "gate/gate_metrics.csv",
    "gate/gate_mcnemar.csv",
    "gate/gate_per_class.csv",
    "gate/gate_newly_wrong.csv",
}


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory):
    """One server (and its own database) for the module; each test registers its own model name."""
    srv = PostgresMlflowServer(postgres, tmp_path_factory.mktemp("mlflow-server")).start()
    try:
        yield srv
    finally:
        srv.stop()


def _cfg(server: PostgresMlflowServer, tmp: Path, model_name: str) -> RegisterCfg:
    """Default register settings (McNemar gate) pointing at the server; artifact_root must stay unused."""
    base = parse_params(tiny_params_dict()).register
    return dataclasses.replace(
        base, tracking_uri=server.url, artifact_root=str(tmp / "client-artifacts"), model_name=model_name
    )


def _now() -> str:
    t = datetime.now(UTC).isoformat(timespec="microseconds")
    time.sleep(0.01)  # the next alias change is strictly later
    return t


def _clone(client, name: str, version: str) -> str:
    """Another version of the same logged model. The server only accepts a `models:/m-<id>` source
    with its model_id, and REST answers carry no model_id (MLflow 3.17), so it is read off the source."""
    mv = client.get_model_version(name, version)
    assert mv.source.startswith("models:/m-"), mv.source
    model_id = mv.source.removeprefix("models:/")
    return str(client.create_model_version(name, mv.source, run_id=mv.run_id, model_id=model_id).version)


def _aliases_in_postgres(server: PostgresMlflowServer, name: str) -> dict[str, int]:
    return dict(server.query("SELECT alias, version FROM registered_model_aliases WHERE name = %s", name))


def test_mcnemar_gate_rejects_a_worse_challenger_and_serves_its_report(trained_tiny, server, tmp_path):
    cfg = _cfg(server, tmp_path, "pg-gate")
    name = cfg.model_name
    assert cfg.gate_test == "mcnemar"
    first = register(trained_tiny, tmp_path / "a", cfg)
    assert first["promoted"] and first["version"] == "1" and first["tracking_uri"] == server.url
    # claims 0.99 macro-F1, always answers one class: the gate re-scores both on the test split
    worse, _ = worse_challenger(trained_tiny, tmp_path / "b", macro_f1=0.99)
    second = register_stage.run(params_with(cfg), worse)
    assert second["version"] == "2" and not second["promoted"] and "re-scored" in second["reason"]
    assert second["value"] < second["champion_value"]

    client = server.client()
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_model_version_by_alias(name, "challenger").version == "2"
    assert registry.version_facts(client, name, "2")["vistune.gate_significance"].startswith("McNemar")
    assert GATE_FILES <= {a.path for a in client.list_artifacts(second["run_id"], "gate")}
    report = Path(client.download_artifacts(second["run_id"], "gate/gate_report.md", str(tmp_path / "dl")))
    assert report.read_text() == (worse.root / second["gate_report"]).read_text()
    assert "challenger v2 vs champion v1" in report.read_text()
    metrics = pd.read_csv(client.download_artifacts(second["run_id"], "gate/gate_metrics.csv", str(tmp_path / "dl")))
    assert metrics.set_index("metric").loc["macro_f1", "delta"] < 0
    # artifacts went through the server to its destination, never to the client's artifact_root
    assert client.get_run(second["run_id"]).info.artifact_uri.startswith("mlflow-artifacts:/")
    assert any(server.artifacts.rglob("gate_report.md")) and not Path(cfg.artifact_root).exists()

    # the registry really lives in PostgreSQL
    assert server.query("SELECT version, status FROM model_versions WHERE name = %s ORDER BY version", name) == [
        (1, "READY"),
        (2, "READY"),
    ]
    assert _aliases_in_postgres(server, name) == {"champion": 1, "challenger": 2}
    assert server.query(
        "SELECT value FROM model_version_tags WHERE name = %s AND version = 2 AND key = %s", name, "vistune.gate"
    ) == [("kept as challenger",)]
    assert (
        server.query(
            "SELECT count(*) FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id WHERE e.name = %s",
            cfg.experiment,
        )[0][0]
        >= 2
    )


def test_promote_rollback_archive_history_and_cli(trained_tiny, server, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("VISTUNE_PREFECT_FLOW_RUN_NAME", raising=False)
    cfg = _cfg(server, tmp_path, "pg-history")
    name = cfg.model_name
    v1 = register(trained_tiny, tmp_path / "lay", cfg)["version"]
    client, lock = tracking.open_registry(cfg, tmp_path)
    t_v1 = _now()
    mv = client.get_model_version(name, v1)
    v2, v3 = _clone(client, name, v1), _clone(client, name, v1)

    assert registry.promote(client, name, v2, lock, reason="hotfix") == v1
    t_v2 = _now()
    assert not registry.gate(client, name, v3, "test_macro_f1", 1.0, 0.0, lock, failures=["held back"]).promoted
    registry.archive(client, name, v3, lock)
    assert registry.rollback(client, name, lock) == (v2, v1)  # previous champion
    assert registry.rollback(client, name, lock, to_time=t_v2) == (v1, v2)  # champion as of t_v2

    got = [(e.action, e.alias, e.from_version, e.to_version) for e in history.read(server.client(), name)]
    assert got == [
        ("gate", "challenger", None, v1),
        ("gate", "champion", None, v1),
        ("promote", "champion", v1, v2),
        ("gate", "challenger", v1, v3),
        ("archive", "challenger", v3, None),
        ("rollback", "champion", v2, v1),
        ("rollback", "champion", v1, v2),
    ]

    # the CLI with nothing but the http URL in params.yaml
    base = ["--params", str(write_params_file(tmp_path / "params.yaml", cfg)), "--root", str(tmp_path)]
    capsys.readouterr()
    assert cli.main([*base, "rollback", "--to-time", t_v1]) == 0
    assert f"v{v2} -> v{v1}" in capsys.readouterr().out
    assert cli.main([*base, "history"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + len(got) + 1 and "hotfix" in out[3] and "as of" in out[-1]
    assert cli.main([*base, "lineage", v1]) == 0
    out = capsys.readouterr().out
    assert f"{name} v{v1} (run {mv.run_id})" in out and "dvc repro" in out

    fresh = server.client()
    assert fresh.get_model_version_by_alias(name, "champion").version == v1
    assert fresh.get_model_version(name, v3).tags["vistune.archived"] == "true"
    assert _aliases_in_postgres(server, name) == {"champion": int(v1)}  # archive dropped the challenger alias
    # the history is on the model's registry-log run; the registered model keeps only the pointer to it
    log_run = fresh.get_registered_model(name).tags[history.POINTER].removeprefix("runs:/")
    logged = server.query(
        "SELECT count(*) FROM tags WHERE run_uuid = %s AND key LIKE %s", log_run, history.PREFIX + "%"
    )
    assert logged[0][0] == len(got) + 1
    assert server.query("SELECT key FROM registered_model_tags WHERE name = %s", name) == [(history.POINTER,)]
    assert server.query(
        "SELECT value FROM model_version_tags WHERE name = %s AND version = %s AND key = %s",
        name,
        int(v3),
        "vistune.archived",
    ) == [("true",)]
