"""Checks shared by the tests whose deployment runs pause for approval (`register.approval: required`):
the served train-pipeline (tests/test_pipeline_e2e.py) and the work-pool one (tests/flows/test_work_pool.py).

A paused run waits for a reviewer on its version and holds nothing of vistune's: the workspace lock,
a run worktree, the registry's file lock and its Prefect global concurrency slot are all free.
Call these with PREFECT_API_URL pointing at the server the runs report to.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from filelock import FileLock, Timeout

from integrations import registry, tags as T

NAME = "vistune-classifier"


def wait_state(run_id, types: set[str], logs: Path, timeout: float = 1200):
    """The flow run once its state type is one of `types` (a final state that is not fails at once)."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run_id)
            kind = run.state.type.value if run.state else ""
            if kind in types:
                return run
            if (run.state and run.state.is_final()) or time.monotonic() > deadline:
                tails = "\n".join(p.read_text()[-3000:] for p in sorted(logs.glob("*.log")))
                assert not (run.state and run.state.is_final()), f"run ended {run.state}, wanted {types}:\n{tails}"
                raise AssertionError(f"run still {run.state} after {timeout:.0f} s:\n{tails}")
            time.sleep(1)


def wait_for_deployment(name: str, procs: list[subprocess.Popen], logs: Path, timeout: float = 300) -> None:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            try:
                client.read_deployment_by_name(name)
                return
            except Exception:
                dead = [p.args for p in procs if p.poll() is not None]
                assert not dead and time.monotonic() < deadline, f"{name} never appeared ({dead} exited); {logs}"
                time.sleep(1)


def free(lock_file: Path) -> bool:
    """Nobody holds this file lock right now (taken and given back at once)."""
    lock = FileLock(str(lock_file))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    lock.release()
    return True


def registry_slots() -> int:
    """Slots in use of the registry's one-slot Prefect global concurrency limit (the gate created it)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(f"vistune-registry-{NAME}")
    assert limit.limit == 1
    return limit.active_slots


def paused_for(run_id, client, version: str, logs: Path) -> None:
    """The run waits for a reviewer on v`version`: its pause key and form name it, the version is pending."""
    from prefect.input.actions import read_flow_run_input

    run = wait_state(run_id, {"PAUSED"}, logs)
    assert run.state.state_details.pause_key == f"approval-v{version}"
    form = read_flow_run_input(f"paused-approval-v{version}-description", run_id)
    assert f"v{version} to champion?" in form and "Model card" in form
    assert client.get_model_version(NAME, version).tags[T.APPROVAL] == "pending"


def nothing_held(repo: Path) -> None:
    """No lock of vistune's is held on `repo` and no run worktree is left (call while every run waits)."""
    assert free(repo / ".dvc" / "tmp" / "vistune-pipeline.lock"), "a paused run holds the workspace lock"
    assert free(repo / "mlflow" / ".registry.lock"), "a paused run holds the registry's file lock"
    assert registry_slots() == 0, "a paused run holds the registry's Prefect concurrency slot"
    runs = repo / ".dvc" / "tmp" / "runs"
    assert not runs.is_dir() or not list(runs.iterdir()), "a paused run keeps its worktree"
    listed = subprocess.run(
        ["git", "worktree", "list", "--porcelain"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ),
    ).stdout
    assert listed.count("worktree ") == 1


def challenger(client) -> str | None:
    return registry.alias_version(client, NAME, "challenger")


def champion(client) -> str | None:
    return registry.alias_version(client, NAME, "champion")
