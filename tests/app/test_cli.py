"""`vistune promote|rollback|archive|status` and the same actions as Prefect flows, on a real store."""

from __future__ import annotations

import pytest

from app import cli
from integrations import registry, tracking

from tests.integrations.registry_helpers import register, write_params_file

NAME = "vistune-classifier"


@pytest.fixture
def store(trained_tiny, mlflow_cfg, tmp_path):
    """A store with v1 (champion) and v2, v3 (same real model, registered without a gate)."""
    v1 = register(trained_tiny, tmp_path / "lay", mlflow_cfg, macro_f1=0.5)["version"]
    client, lock = tracking.open_registry(mlflow_cfg, tmp_path)
    mv = client.get_model_version(NAME, v1)
    others = [str(client.create_model_version(NAME, mv.source, run_id=mv.run_id).version) for _ in range(2)]
    params = write_params_file(tmp_path / "params.yaml", mlflow_cfg)
    return client, params, tmp_path, [str(v1), *others]


def _cli(params, root, *args) -> int:
    return cli.main(["--params", str(params), "--root", str(root), *args])


def test_promote_rollback_archive_status(store, capsys):
    client, params, root, (v1, v2, v3) = store
    assert _cli(params, root, "promote", v2, "--reason", "better on the holdout") == 0
    assert f"champion v{v1} -> v{v2}" in capsys.readouterr().out
    assert registry.alias_version(client, NAME, "champion") == v2
    assert "better on the holdout" in client.get_model_version(NAME, v2).description
    assert _cli(params, root, "rollback") == 0
    assert f"rolled back v{v2} -> v{v1}" in capsys.readouterr().out
    assert registry.alias_version(client, NAME, "champion") == v1
    assert _cli(params, root, "archive", v3) == 0
    assert client.get_model_version(NAME, v3).tags["vistune.archived"] == "true"
    assert _cli(params, root, "status") == 0
    out = capsys.readouterr().out
    assert "champion" in out and "archived" in out


@pytest.mark.parametrize("args, message", [
    (("promote", "99"), "vistune promote: error:"),
    (("archive", "1"), "is the champion"),
    (("serve", "--version", "99"), "vistune serve: error:"),
])
def test_user_mistakes_exit_2_with_one_line(store, capsys, args, message):
    _, params, root, _ = store
    assert _cli(params, root, *args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_params_file_is_one_line(tmp_path, capsys):
    assert cli.main(["--params", str(tmp_path / "nope.yaml"), "status"]) == 2
    assert "params file not found" in capsys.readouterr().err


def test_prefect_flows_promote_rollback_archive(store):
    """The same three actions as real Prefect flow runs (one temporary server for the module)."""
    from tests.prefect_harness import prefect_server

    from flows.promote import archive_flow, promote_flow, rollback_flow

    client, params, root, (v1, v2, v3) = store
    with prefect_server():
        assert promote_flow(v3, reason="from prefect", repo=str(root)) == v1
        assert registry.alias_version(client, NAME, "champion") == v3
        assert tuple(rollback_flow(repo=str(root))) == (v3, v1)
        archive_flow(v2, repo=str(root))
    assert registry.alias_version(client, NAME, "champion") == v1
    assert client.get_model_version(NAME, v2).tags["vistune.archived"] == "true"
    assert "from prefect" in client.get_model_version(NAME, v3).tags["vistune.decision_reason"]
