"""`vistune promote|rollback|archive|status` and the same actions as Prefect flows, on a real store."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from app import cli
from integrations import history, registry, tracking

from tests.conftest import tiny_register_cfg
from tests.integrations.registry_helpers import register, write_params_file

NAME = "vistune-classifier"


@pytest.fixture(scope="module")
def registered(trained_tiny, tmp_path_factory) -> tuple[Path, list[str]]:
    """A store with v1 (champion) and v2, v3 (same real model, registered without a gate), built once: the
    real register stage logs the model (the slow part); each test gets its own copy of the sqlite file
    (`store`). Returns (the store's sqlite file, [v1, v2, v3])."""
    base = tmp_path_factory.mktemp("registered")
    cfg = tiny_register_cfg(base)
    v1 = register(trained_tiny, base / "lay", cfg, macro_f1=0.5)["version"]
    client, _ = tracking.open_registry(cfg, base)
    mv = client.get_model_version(NAME, v1)
    others = [str(client.create_model_version(NAME, mv.source, run_id=mv.run_id).version) for _ in range(2)]
    return base / "mlflow.db", [str(v1), *others]


@pytest.fixture
def store(registered, mlflow_cfg, tmp_path):
    """This test's own copy of the `registered` store (its aliases, tags and history are the test's to change;
    the model files stay where the registration logged them, read only)."""
    db, versions = registered
    shutil.copy2(db, tmp_path / "mlflow.db")
    assert mlflow_cfg.tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, _ = tracking.open_registry(mlflow_cfg, tmp_path)
    assert registry.alias_version(client, NAME, "champion") == versions[0]
    params = write_params_file(tmp_path / "params.yaml", mlflow_cfg)
    return client, params, tmp_path, list(versions)


@pytest.fixture(scope="module")
def prefect():
    """One temporary Prefect server for this module's flow runs and events, from the first test that asks
    (tests that read back what the server stored filter on their own names or start time)."""
    from tests.prefect_harness import prefect_server

    with prefect_server():
        yield


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
    assert client.get_model_version(NAME, v1).description.count("\n") >= 2  # v1's description has its card line
    rows = out.splitlines()
    rows = rows[next(i for i, r in enumerate(rows) if r.split()[:1] == ["version"]) :]
    assert rows[0].split() == ["version", "aliases", "gate", "last", "action"] and len(rows) == 4  # one row each
    assert [r.split()[0] for r in rows[1:]] == [v1, v2, v3] and "Model card" not in out
    assert "champion" in rows[1].split()[1] and rows[1].split()[2] == "promoted"


@pytest.mark.parametrize(
    "args, message",
    [
        (("promote", "99"), "vistune promote: error:"),
        (("archive", "1"), "is the champion"),
        (("serve", "--version", "99"), "vistune serve: error:"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(store, capsys, args, message):
    _, params, root, _ = store
    assert _cli(params, root, *args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_params_file_is_one_line(tmp_path, capsys):
    assert cli.main(["--params", str(tmp_path / "nope.yaml"), "status"]) == 2
    assert "params file not found" in capsys.readouterr().err


def test_prefect_flows_promote_rollback_archive(store, prefect):
    """The same three actions as real Prefect flow runs (one temporary server for the module)."""
    from flows.promote import archive_flow, promote_flow, rollback_flow

    client, params, root, (v1, v2, v3) = store
    assert promote_flow(v3, reason="from prefect", repo=str(root)) == v1
    assert registry.alias_version(client, NAME, "champion") == v3
    assert tuple(rollback_flow(repo=str(root))) == (v3, v1)
    archive_flow(v2, repo=str(root))
    assert registry.alias_version(client, NAME, "champion") == v1
    assert client.get_model_version(NAME, v2).tags["vistune.archived"] == "true"
    assert "from prefect" in client.get_model_version(NAME, v3).description.splitlines()[0]


def _kept(client, lock, version: str, f1: float) -> None:
    """`version` through the real gate with a worse score: kept as challenger."""
    assert not registry.gate(client, NAME, version, "test_macro_f1", f1, 0.0, lock).promoted


def test_promote_refuses_a_kept_version_unless_forced_with_a_reason(store, capsys):
    """The guard: refused with the numbers in one line; --force needs --reason; the override and its
    reason land in the alias history; rollback is still one step."""
    from integrations import history

    client, params, root, (v1, v2, _) = store
    _, lock = tracking.open_registry(tracking_cfg := cli.load_params(params).register, root)
    assert tracking_cfg.gate_metric == "test_macro_f1"
    _kept(client, lock, v2, 0.1)
    capsys.readouterr()
    assert _cli(params, root, "promote", v2) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"vistune promote: error: refused to promote v{v2}: the gate kept it as challenger and it is worse "
        f"than the champion (test_macro_f1 0.1000 vs champion v{v1} 0.5000); to promote anyway say why: "
        f'--force --reason "..." (Prefect: force=true and a reason)'
    )
    assert _cli(params, root, "promote", v2, "--force") == 2
    assert "--force needs --reason" in capsys.readouterr().err
    assert registry.alias_version(client, NAME, "champion") == v1
    assert _cli(params, root, "promote", v2, "--force", "--reason", "hotfix for customer X") == 0
    assert registry.alias_version(client, NAME, "champion") == v2
    last = history.read(client, NAME)[-1]
    assert (last.action, last.from_version, last.to_version) == ("override", v1, v2)
    assert last.reason.startswith("forced: hotfix for customer X (overrode: v") and "0.1000 vs champion" in last.reason
    assert _cli(params, root, "rollback") == 0
    assert registry.alias_version(client, NAME, "champion") == v1


def _task_runs(name: str) -> list:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as pc:
        return [r for r in pc.read_task_runs() if r.name == name]


def test_prefect_promote_refuses_then_forces(store, prefect):
    """The `promote` deployment's flow: refused (the task fails at once, not retried), then forced."""
    from tests.prefect_harness import drain_prefect_services

    from flows.promote import promote_flow

    client, params, root, (v1, v2, _) = store
    _, lock = tracking.open_registry(cli.load_params(params).register, root)
    _kept(client, lock, v2, 0.1)
    assert not _task_runs(f"set-champion-v{v2}")  # the module's server: no earlier test promoted v2 by a flow
    with pytest.raises(ValueError, match=rf"refused to promote v{v2}: .*0.1000 vs champion v{v1} 0.5000"):
        promote_flow(int(v2), repo=str(root))
    assert registry.alias_version(client, NAME, "champion") == v1
    drain_prefect_services()  # task runs reach the server as events: deliver them before reading
    deadline = time.monotonic() + 60
    while not (refused := _task_runs(f"set-champion-v{v2}")) and time.monotonic() < deadline:
        time.sleep(1)  # the server records task runs from those events in the background
    assert len(refused) == 1 and refused[0].run_count == 1  # one attempt: a refusal is not retried
    assert promote_flow(int(v2), reason="reviewed by ops", force=True, repo=str(root)) == v1
    assert registry.alias_version(client, NAME, "champion") == v2
    assert "forced: reviewed by ops" in client.get_model_version(NAME, v2).description.splitlines()[0]


def test_approval_of_a_worse_version_is_refused(store):
    """The approval path shares the guard: a version that passed a lax gate (negative margin) but is
    worse than the champion is not promoted by an approval; it stays challenger, the reason says why."""
    client, params, root, (v1, v2, _) = store
    _, lock = tracking.open_registry(cli.load_params(params).register, root)
    d = registry.gate(client, NAME, v2, "test_macro_f1", 0.3, -0.5, lock, approval_required=True)
    assert d.pending_approval
    outcome, reason = registry.review(client, NAME, v2, lock, "approved", "looks fine", "reviewer:ann", v1)
    assert outcome == "refused" and "0.3000 vs champion v1 0.5000".replace("v1", f"v{v1}") in reason
    assert registry.alias_version(client, NAME, "champion") == v1
    assert client.get_model_version(NAME, v2).tags["vistune.gate"] == "kept as challenger"


def test_approval_with_force_and_a_reason_overrides_the_guard(store):
    """The approval form offers force, as the promote deployment does: without a comment it is ignored
    (refused, one answer per form); with one the version becomes champion, an override in the history."""
    from flows.approval import Review

    assert {"force", "comment"} <= set(Review.model_json_schema()["properties"])  # the fields the form shows
    client, params, root, (v1, v2, v3) = store
    _, lock = tracking.open_registry(cli.load_params(params).register, root)
    champ = registry.alias_version(client, NAME, "champion")
    d = registry.gate(client, NAME, v2, "test_macro_f1", 0.3, -0.5, lock, approval_required=True)
    assert d.pending_approval
    outcome, reason = registry.review(client, NAME, v2, lock, "approved", "", "reviewer:ann", champ, force=True)
    assert outcome == "refused" and reason.endswith("(force ignored: it needs a comment saying why)")
    assert registry.alias_version(client, NAME, "champion") == champ
    d = registry.gate(client, NAME, v3, "test_macro_f1", 0.3, -0.5, lock, approval_required=True)
    outcome, reason = registry.review(
        client, NAME, v3, lock, "approved", "needed for the demo", "reviewer:bo", champ, force=True
    )
    assert outcome == "approved" and "forced: needed for the demo (overrode: v" in reason
    assert registry.alias_version(client, NAME, "champion") == v3
    last = history.read(client, NAME)[-1]
    assert (last.action, last.actor, last.from_version, last.to_version) == ("override", "reviewer:bo", champ, v3)
    assert "forced: needed for the demo" in last.reason


def _champion_events(want: int, since, timeout_s: float = 60) -> list:
    """The `vistune.champion.changed` events the test server has stored that occurred from `since` on (the
    module's server also holds earlier tests' events), oldest first, once there are `want`."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as pc:
        while True:
            wanted = EventFilter(
                event=EventNameFilter(name=["vistune.champion.changed"]), occurred=EventOccurredFilter(since=since)
            )
            found = pc.read_events(wanted, limit=20)
            if len(found.events) >= want or time.monotonic() > deadline:
                return sorted(found.events, key=lambda e: e.occurred)
            time.sleep(1)


def test_cli_promote_and_rollback_send_champion_changed(store, prefect, capsys):
    """`vistune promote` (its own short-lived process) and `vistune rollback` send the event the flows send,
    to a real Prefect server; without a Prefect API they say so in one line and still move the alias."""
    import os
    import subprocess
    import sys
    from datetime import UTC, datetime

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from integrations import history
    from tests.conftest import REPO
    from tests.prefect_harness import drain_prefect_services

    client, params, root, (v1, v2, v3) = store
    _, lock = tracking.open_registry(cli.load_params(params).register, root)
    _kept(client, lock, v2, 0.1)  # promoting v2 needs --force: the payload says forced
    drain_prefect_services()  # earlier tests' events are delivered before this test's start time is taken
    since = datetime.now(UTC)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(PYTHONPATH=str(REPO), PREFECT_API_URL=PREFECT_API_URL.value())
    cmd = [sys.executable, "-m", "app.cli", "--params", str(params), "--root", str(root)]
    proc = subprocess.run(
        [*cmd, "promote", v2, "--force", "--reason", "hotfix"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "note:" not in proc.stderr, proc.stdout + proc.stderr
    assert _cli(params, root, "rollback") == 0
    sent = _champion_events(2, since)
    actor = history.default_actor()
    got = [
        {k: e.payload[k] for k in ("model", "old_version", "new_version", "action", "forced", "actor")} for e in sent
    ]
    assert got == [
        {"model": NAME, "old_version": v1, "new_version": v2, "action": "override", "forced": True, "actor": actor},
        {"model": NAME, "old_version": v2, "new_version": v1, "action": "rollback", "forced": False, "actor": actor},
    ]
    assert (
        sent[0].payload["reason"].startswith("forced: hotfix") and sent[1].payload["reason"] == f"rollback from v{v2}"
    )
    assert {(e.resource.id, e.resource["vistune.emitter"]) for e in sent} == {(f"vistune.model.{NAME}", "vistune")}

    capsys.readouterr()
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert _cli(params, root, "promote", v3) == 0
    out, err = capsys.readouterr()
    assert f"champion v{v1} -> v{v3}" in out and registry.alias_version(client, NAME, "champion") == v3
    assert err.strip() == (
        "note: no Prefect API configured (PREFECT_API_URL): vistune.champion.changed not sent; the alias moved all the same"
    )
