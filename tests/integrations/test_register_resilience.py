"""`register` against a real `mlflow server` (PostgreSQL backend store, served artifacts) that is down,
comes back, goes away and returns: retries then one clear line, champion unchanged, and exactly one
version per model (idempotent)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from integrations import retry
from tests.integrations.mlflow_server import PostgresMlflowServer
from tests.integrations.registry_helpers import METRIC_GATE_ONLY, copy_layout, params_with
from vistune.errors import VistuneError

pytestmark = pytest.mark.slow


def _client(url: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=url, registry_uri=url)


def _versions(url: str, name: str) -> list[str]:
    return sorted((mv.version for mv in _client(url).search_model_versions(f"name='{name}'")), key=int)


def _champion(url: str, name: str) -> str:
    return str(_client(url).get_model_version_by_alias(name, "champion").version)


def test_retry_waits_double_and_stop_at_the_limit():
    calls, waits = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("refused")
        return "ok"

    assert retry.call(flaky, retries=3, backoff_s=0.5, what="t", sleep=waits.append, log=lambda m: None) == "ok"
    assert waits == [0.5, 1.0]
    with pytest.raises(ConnectionError):
        retry.call(
            lambda: (_ for _ in ()).throw(ConnectionError("x")),
            retries=2,
            backoff_s=1,
            what="t",
            sleep=waits.append,
            log=lambda m: None,
        )
    assert waits[2:] == [1.0, 2.0]
    with pytest.raises(KeyError):  # not transient: no retry at all
        retry.call(
            lambda: {}["k"],
            retries=5,
            backoff_s=1,
            what="t",
            retry_if=lambda e: isinstance(e, OSError),
            sleep=waits.append,
            log=lambda m: None,
        )
    assert len(waits) == 4
    assert retry.delays(8, 1.0)[-1] == retry.MAX_DELAY_S


def test_register_survives_server_outages_and_registers_exactly_once(
    trained_tiny, mlflow_cfg, postgres, tmp_path, capsys
):
    from stages import register as register_stage

    server = PostgresMlflowServer(postgres, tmp_path / "server")
    cfg = dataclasses.replace(mlflow_cfg, tracking_uri=server.url, retries=2, retry_backoff_s=0.2)
    name = cfg.model_name
    lay_a = copy_layout(trained_tiny, tmp_path / "a")
    lay_b = copy_layout(trained_tiny, tmp_path / "b", macro_f1=0.99)
    params_a = params_with(cfg, **METRIC_GATE_ONLY)  # b's faked better score promotes it
    # another model: same weights, other evaluate params (what a re-evaluated run would register)
    params_b = dataclasses.replace(params_a, evaluate=dataclasses.replace(params_a.evaluate, batch_size=7))

    def down_fails(params, lay) -> None:
        t0 = time.monotonic()
        with pytest.raises(VistuneError) as err:
            register_stage.run(params, lay)
        msg = str(err.value)
        assert "\n" not in msg and server.url in msg and "is the MLflow server running? `make up`" in msg
        assert "after 2 retries" in msg
        assert time.monotonic() - t0 >= 0.2 + 0.4  # it did wait the backoff before giving up
        assert "retry 2/2" in capsys.readouterr().out
        assert not lay.registration.exists()

    try:
        down_fails(params_a, lay_a)  # never started

        server.start()
        first = register_stage.run(params_a, lay_a)
        assert first["promoted"] and first["version"] == "1" and first["reused"] is False
        again = register_stage.run(params_a, lay_a)  # re-run: nothing new
        assert again["reused"] is True and again["version"] == "1" and again["run_id"] == first["run_id"]
        assert _versions(server.url, name) == ["1"] and _champion(server.url, name) == "1"
        # the server's artifact destination holds the model, not the client's local artifact_root
        assert any(server.artifacts.rglob("MLmodel"))
        assert not Path(cfg.artifact_root).exists()

        server.stop()
        down_fails(params_b, lay_b)  # server gone while a better model waits

        server.start()
        assert _versions(server.url, name) == ["1"] and _champion(server.url, name) == "1"  # champion unchanged
        second = register_stage.run(params_b, lay_b)
        assert second["version"] == "2" and second["promoted"] and second["reused"] is False
        third = register_stage.run(params_b, lay_b)
        assert third["reused"] is True and third["version"] == "2"
        assert _versions(server.url, name) == ["1", "2"] and _champion(server.url, name) == "2"
        # ...and those are PostgreSQL rows, not a store the client opened itself
        assert server.query("SELECT version FROM model_versions WHERE name = %s ORDER BY version", name) == [(1,), (2,)]
    finally:
        server.stop()
