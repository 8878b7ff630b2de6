"""A champion moved behind vistune's back (straight through MlflowClient, as the MLflow UI does) is
flagged by `vistune status`, the next flow run and `vistune history`, then written into the log."""

from __future__ import annotations

from prefect import flow

from flows.registry_guard import flag_outside_changes
from app import cli
from integrations import history, registry, tracking

from tests.integrations.registry_helpers import register, write_params_file

NAME = "vistune-classifier"


@flow(name="guard-under-test")
def guard_flow(repo: str) -> list[str]:
    """What train-pipeline runs first."""
    return flag_outside_changes(repo)


def test_alias_moved_outside_vistune_is_flagged_and_recorded(harness, trained_tiny, mlflow_cfg, tmp_path, capsys):
    v1 = register(trained_tiny, tmp_path / "run", mlflow_cfg)["version"]
    client, lock = tracking.open_registry(mlflow_cfg, tmp_path)
    params = write_params_file(tmp_path / "params.yaml", mlflow_cfg)
    base = ["--params", str(params), "--root", str(tmp_path)]
    assert history.unrecorded_changes(client, NAME) == [] and guard_flow(str(tmp_path)) == []

    mv = client.get_model_version(NAME, v1)
    v2 = str(client.create_model_version(NAME, mv.source, run_id=mv.run_id).version)
    client.set_registered_model_alias(NAME, "champion", v2)  # behind vistune's back

    assert history.unrecorded_changes(client, NAME) == [history.OutsideChange("champion", v1, v2)]
    capsys.readouterr()
    assert cli.main([*base, "status"]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("WARNING")]
    assert warnings == [
        f"WARNING: {NAME}@champion is v{v2} but vistune last set it to v{v1}: changed outside vistune "
        "(MLflow UI or client); `vistune history` shows it, `vistune promote`/`rollback` restores a "
        "recorded state"
    ]
    assert guard_flow(str(tmp_path)) == [warnings[0].removeprefix("WARNING: ")]
    assert cli.main([*base, "history"]) == 0
    last = capsys.readouterr().out.splitlines()[-1].split()
    assert last[:3] + last[4:8] == ["!", "unknown", "outside", "outside", "champion", v1, v2]

    # the next vistune alias change writes the outside change into the log first; then all agree again
    assert registry.promote(client, NAME, v1, lock, reason="undo the UI edit", actor="cli:ops") == v2
    entries = history.read(client, NAME)
    assert [(e.actor, e.action, e.from_version, e.to_version) for e in entries[-2:]] == [
        ("outside vistune", "outside", v1, v2),
        ("cli:ops", "promote", v2, v1),
    ]
    assert history.unrecorded_changes(client, NAME) == []
    assert registry.rollback(client, NAME, lock) == (v1, v2)  # the outside holder counts as a previous champion
