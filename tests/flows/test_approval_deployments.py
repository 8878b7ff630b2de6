"""Approval through the deployments themselves: `python -m flows.serve` (the served train-pipeline,
shared workspace) and a real `prefect worker` of a process work pool (`python -m flows.deploy`,
isolated worktree), both on one Prefect server, with `register.approval: required`.

A run triggered through the API goes through the real DVC stages, `register` gates the version
(it passes) and the flow run pauses for a reviewer. While it waits, nothing of vistune is held: the
workspace lock (served run), the run's worktree (pool run), the registry's file lock and its Prefect
global concurrency slot are all free. The run is resumed with the form's input through the Prefect
API: the served run is approved (v1 becomes champion), the pool run is rejected (v2 stays challenger;
its params differ only in `register.min_improvement`; it starts from the first run's committed
dvc.lock, so DVC skips what it can). Aliases and the alias history end as the reviewers said.
One full tiny pipeline and one partial one (validate's decode cache and train's checkpoints are
persistent, uncached outputs a fresh worktree lacks, so those two rerun): 325 s on the 2-core dev
machine under load 8-10 (2026-12-02), plus the session's Prefect test server.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

from integrations import history, registry, tags as T
from tests.conftest import stop_process_group, tiny_git_repo, tiny_params_dict, write_params

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
NAME = "vistune-classifier"
POOL = "vistune-approval-pool"
SERVED = "train-pipeline/train-pipeline"
POOLED = "train-pipeline/train-pipeline-pool"


def _approval_required(root: Path) -> None:
    write_params(root / "params.yaml", tiny_params_dict(
        register={"approval": "required", "gate_test": "none"},
        evaluate={"robustness": False, "gradcam": False, "latency": False}))


def _env(tmp_path: Path, api_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "VISTUNE_STORE_ROOT")}
    return env | {"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "PREFECT_HOME": str(tmp_path / "prefect"),
                  "PREFECT_API_URL": api_url, "PREFECT_RUNNER_POLL_FREQUENCY": "2",
                  "PREFECT_WORKER_QUERY_SECONDS": "2", "OMP_NUM_THREADS": "1"}


def _run(cmd: list[str], cwd: Path, env: dict) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-4000:]}"
    return proc.stdout


def _wait_for_deployments(names: tuple[str, ...], procs: dict, logs: Path, timeout: float = 300) -> None:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        for name in names:
            while True:
                try:
                    client.read_deployment_by_name(name)
                    break
                except Exception:
                    dead = [k for k, p in procs.items() if p.poll() is not None]
                    assert not dead and time.monotonic() < deadline, f"{name} never appeared ({dead} exited); {logs}"
                    time.sleep(1)


def _wait_state(run_id, types: set[str], logs: Path, timeout: float = 1200):
    """The flow run once its state type is one of `types` (a final state that is not fails at once)."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run_id)
            kind = run.state.type.value if run.state else ""
            if kind in types:
                return run
            tails = "\n".join(p.read_text()[-3000:] for p in sorted(logs.glob("*.log")))
            assert not (run.state and run.state.is_final()), f"run ended {run.state}, wanted {types}:\n{tails}"
            assert time.monotonic() < deadline, f"run still {run.state} after {timeout:.0f} s:\n{tails}"
            time.sleep(2)


def _free(lock_file: Path) -> bool:
    """Nobody holds this file lock right now (taken and given back at once)."""
    lock = FileLock(str(lock_file))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    lock.release()
    return True


def _registry_slots() -> int:
    """Slots in use of the registry's one-slot Prefect global concurrency limit (the gate created it)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(f"vistune-registry-{NAME}")
    assert limit.limit == 1
    return limit.active_slots


def _paused_and_nothing_held(run_id, repo: Path, client, version: str, logs: Path) -> None:
    """The run waits for a reviewer on v`version` (pending, challenger) and holds no lock of vistune's."""
    from prefect.input.actions import read_flow_run_input

    run = _wait_state(run_id, {"PAUSED"}, logs)
    assert run.state.state_details.pause_key == f"approval-v{version}"
    form = read_flow_run_input(f"paused-approval-v{version}-description", run_id)
    assert f"v{version} to champion?" in form and "Model card" in form
    assert client.get_model_version(NAME, version).tags[T.APPROVAL] == "pending"
    assert registry.alias_version(client, NAME, "challenger") == version
    assert _free(repo / ".dvc" / "tmp" / "vistune-pipeline.lock"), "a paused run holds the workspace lock"
    assert _free(repo / "mlflow" / ".registry.lock"), "a paused run holds the registry's file lock"
    assert _registry_slots() == 0, "a paused run holds the registry's Prefect concurrency slot"
    runs = repo / ".dvc" / "tmp" / "runs"
    assert not runs.is_dir() or not list(runs.iterdir()), "a paused run keeps its worktree"
    assert _run(["git", "worktree", "list", "--porcelain"], repo, os.environ).count("worktree ") == 1


def _start(cmd: list[str], cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def test_served_and_pool_runs_pause_for_approval_and_resume_through_the_api(harness, tmp_path: Path):
    import mlflow
    from prefect.deployments import run_deployment
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL

    repo = tiny_git_repo(tmp_path / "vistune", prepare=_approval_required)
    env, logs = _env(tmp_path, PREFECT_API_URL.value()), tmp_path / "logs"
    logs.mkdir()
    prefect = shlex.quote(str(BIN / "prefect"))
    pool_then_worker = (  # `make pool` then `make workers` (one), while the served run trains
        f"{prefect} work-pool create {POOL} --type process --overwrite && "
        f"{shlex.quote(sys.executable)} -m flows.deploy --pool {POOL} && "
        f"exec {prefect} worker start --pool {POOL} --type process --name approval-worker --limit 1")
    procs = {"serve": _start([sys.executable, "-m", "flows.serve"], repo, env, logs / "serve.log"),
             "worker": _start(["sh", "-c", pool_then_worker], repo, env, logs / "worker.log")}
    try:
        _wait_for_deployments((SERVED,), procs, logs)
        uri = f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}"
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)

        # served deployment, shared workspace: the first version passes the gate, waits, is approved
        served = run_deployment(SERVED, timeout=0)
        _paused_and_nothing_held(served.id, repo, client, "1", logs)
        assert registry.alias_version(client, NAME, "champion") is None
        resume_flow_run(served.id, run_input={"decision": "approve", "reviewer": "alice", "comment": "looks right"})
        assert _wait_state(served.id, {"COMPLETED"}, logs).state.is_completed()
        assert registry.alias_version(client, NAME, "champion") == "1"
        # the user commits the run's dvc.lock and small outputs: the pool run's worktree of HEAD starts from them
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
        _run(git + ["add", "-A"], repo, env)
        _run(git + ["commit", "-qm", "first run"], repo, env)

        # work-pool deployment, isolated worktree: v2 (a lower margin) passes the gate, waits, is rejected
        _wait_for_deployments((POOLED,), procs, logs)
        pooled = run_deployment(POOLED, parameters={"params": {"min_improvement": -1.0}}, timeout=0)
        _paused_and_nothing_held(pooled.id, repo, client, "2", logs)
        resume_flow_run(pooled.id, run_input={"decision": "reject", "reviewer": "bob", "comment": "not yet"})
        run = _wait_state(pooled.id, {"COMPLETED"}, logs)
        assert run.labels.get("prefect.worker.name") == "approval-worker"
    finally:
        for name in ("worker", "serve"):  # before the session's server goes
            stop_process_group(procs[name], grace_s=5)

    assert registry.alias_version(client, NAME, "champion") == "1"
    assert registry.alias_version(client, NAME, "challenger") == "2"
    assert {v: client.get_model_version(NAME, v).tags[T.APPROVAL] for v in ("1", "2")} == {"1": "approved",
                                                                                          "2": "rejected"}
    entries = history.read(client, NAME)
    assert [(e.action, e.alias, e.from_version, e.to_version, e.actor) for e in entries] == [
        ("gate", "challenger", None, "1", f"flow:{served.name}"),
        ("approval", "champion", None, "1", "reviewer:alice"),
        ("gate", "challenger", "1", "2", f"flow:{pooled.name}"),
        ("approval", "champion", "1", "1", "reviewer:bob")]
    assert entries[1].reason == "approved by reviewer:alice: looks right"
    assert entries[3].reason == "v2 rejected by reviewer:bob: not yet; v2 stays challenger"
    assert history.check(client, NAME) == []  # the registry is what the history says
