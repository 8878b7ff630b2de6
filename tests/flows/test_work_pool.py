"""Prefect server on PostgreSQL, a process work pool, two workers running two pipeline runs at once.

Everything real: a PostgreSQL cluster, `prefect server start` on it, `prefect work-pool create`,
`python -m flows.deploy` (the deployment `make pool` creates), two `prefect worker start`
processes, and two runs of train-pipeline with different UI parameters triggered through the API.
Each run works in its own git worktree (workspace="isolated"), so they train in parallel and
leave the main workspace as it was, while both land in the main repo's DVC experiments and
MLflow registry. Tiny configuration (digits, 16 px, one epoch, the slow evaluation extras off).

Promotion waits for a reviewer (`register.approval: required`): both versions pass the gate (the
first finds no champion, the second no champion yet either) and each flow run pauses. While both
wait, nothing of vistune's is held (no worktree, the registry's file lock and Prefect concurrency
slot free); they are resumed with the form's input through the Prefect API, "a" approved (champion),
"b" rejected (stays challenger if it registered last), and the alias history says so in that order.
The served deployment's pause and approval are covered by tests/test_pipeline_e2e.py.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, stop_process_group, tiny_git_repo, tiny_params_dict, tree_hash, write_params
from tests.flows import approval_checks as approval

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
POOL = "vistune-process"
DEPLOYMENT = "train-pipeline/train-pipeline-pool"
# run "a" may lose nothing and run "b" never beats a champion; the reviewers approve "a" and reject "b"
RUNS = {"a": {"lr": 0.01, "min_improvement": -1.0}, "b": {"lr": 0.002, "min_improvement": 1.0}}
# what changes in the main repo by design: git refs (experiments), the shared DVC cache, the MLflow store
SHARED_STATE = (".git", ".dvc/tmp", ".dvc/cache", "mlflow")


def _gate_without_significance_test_and_approval(root: Path) -> None:
    write_params(
        root / "params.yaml",
        tiny_params_dict(
            register={"gate_test": "none", "approval": "required"},
            evaluate={"robustness": False, "gradcam": False, "latency": False},
        ),
    )


def _run(cmd: list[str], cwd: Path, env: dict) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-4000:]}"
    return proc.stdout


def _retried_tasks(run_ids: list) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids)))
    return [f"{t.name} x{t.run_count}" for t in tasks if t.run_count > 1]


def _wait_final(run_ids: list, timeout: float) -> dict:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = {rid: client.read_flow_run(rid) for rid in run_ids}
            if all(r.state and r.state.is_final() for r in runs.values()) or time.monotonic() > deadline:
                return runs
            time.sleep(3)


async def _rows_in_postgres(url: str, run_ids: list) -> list:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(
            "SELECT id, name, state_type::text AS state FROM flow_run WHERE id = ANY($1::uuid[])", run_ids
        )
    finally:
        await conn.close()


def _registry(repo: Path):
    import mlflow

    uri = f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}"
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _version_of(client, experiment: str) -> str:
    """The model version registered by the MLflow run tagged with this DVC experiment (= flow run name)."""
    experiment_id = client.get_experiment_by_name("vistune").experiment_id
    lineage = f"tags.`vistune.lineage.dvc_experiment` = '{experiment}'"
    (run,) = client.search_runs([experiment_id], filter_string=lineage)
    (version,) = client.search_model_versions(f"name='{approval.NAME}' and run_id='{run.info.run_id}'")
    return str(version.version)


def _review(repo: Path, started: dict, logs: Path) -> dict[str, str]:
    """Both runs pause for approval with nothing held; "a" is approved, then "b" rejected, with the
    form's input through the Prefect API. Returns the version each run registered."""
    from prefect.flow_runs import resume_flow_run

    client = _registry(repo)
    for run in started.values():
        approval.wait_state(run.id, {"PAUSED"}, logs, timeout=900)
    versions = {key: _version_of(client, run.name) for key, run in started.items()}
    for key, run in started.items():
        approval.paused_for(run.id, client, versions[key], logs)
    assert approval.challenger(client) == max(versions.values(), key=int)  # whichever registered last
    assert approval.champion(client) is None
    approval.nothing_held(repo)

    resume_flow_run(started["a"].id, run_input={"decision": "approve", "reviewer": "alice", "comment": "looks right"})
    approval.wait_state(started["a"].id, {"COMPLETED"}, logs)
    assert approval.champion(client) == versions["a"]
    resume_flow_run(started["b"].id, run_input={"decision": "reject", "reviewer": "bob", "comment": "not yet"})
    approval.wait_state(started["b"].id, {"COMPLETED"}, logs)
    return versions


def _assert_reviews(repo: Path, runs: dict, versions: dict) -> None:
    """Aliases, approval tags and the alias history as the gate and the two reviewers left them."""
    from integrations import history, tags as T

    client = _registry(repo)
    va, vb = versions["a"], versions["b"]
    first, second = sorted(versions, key=lambda key: int(versions[key]))
    assert approval.champion(client) == va
    assert approval.challenger(client) == versions[second]
    assert {v: client.get_model_version(approval.NAME, v).tags[T.APPROVAL] for v in (va, vb)} == {
        va: "approved",
        vb: "rejected",
    }
    entries = history.read(client, approval.NAME)
    assert [(e.action, e.alias, e.from_version, e.to_version, e.actor) for e in entries] == [
        ("gate", "challenger", None, versions[first], f"flow:{runs[first].name}"),
        ("gate", "challenger", versions[first], versions[second], f"flow:{runs[second].name}"),
        ("approval", "champion", None, va, "reviewer:alice"),
        ("approval", "champion", va, va, "reviewer:bob"),
    ]
    assert entries[2].reason == "approved by reviewer:alice: looks right"
    assert entries[3].reason == f"v{vb} rejected by reviewer:bob: not yet; v{vb} stays challenger"
    assert history.unrecorded_changes(client, approval.NAME) == []  # the registry is what the history says


def _assert_experiments_and_registry(repo: Path, env: dict, runs: dict) -> None:
    """Both runs are DVC experiments and MLflow runs of the main repo, with their UI parameters; "a" is champion."""
    exps = {r["Experiment"]: r for r in csv.DictReader(io.StringIO(_run(["dvc", "exp", "show", "--csv"], repo, env)))}
    for key, run in runs.items():
        assert run.name in exps, list(exps)
        assert float(exps[run.name]["train.lr"]) == RUNS[key]["lr"]
        assert float(exps[run.name]["register.min_improvement"]) == RUNS[key]["min_improvement"]

    # ... and MLflow runs in the main repo's store, tagged with those experiments; "a" is champion
    client = _registry(repo)
    experiment_id = client.get_experiment_by_name("vistune").experiment_id
    mlflow_runs = {}
    for key, run in runs.items():
        tagged = client.search_runs(
            [experiment_id], filter_string=f"tags.`vistune.lineage.dvc_experiment` = '{run.name}'"
        )
        assert len(tagged) == 1, f"{run.name}: {len(tagged)} MLflow runs"
        assert tagged[0].info.run_name == run.name  # one name in Prefect, DVC and MLflow
        assert float(tagged[0].data.params["train.lr"]) == RUNS[key]["lr"]
        mlflow_runs[key] = tagged[0].info.run_id
    versions = client.search_model_versions("name='vistune-classifier'")
    assert sorted(v.run_id for v in versions) == sorted(mlflow_runs.values())
    champion = client.get_model_version_by_alias("vistune-classifier", "champion")
    assert champion.run_id == mlflow_runs["a"]


def test_two_workers_run_isolated_pipelines_in_parallel(postgres, tmp_path: Path):
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.wait import wait_http

    repo = tiny_git_repo(tmp_path / "vistune", prepare=_gate_without_significance_test_and_approval)
    postgres.create_database("prefect")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ) | {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": f"{url}/api",
        "PREFECT_API_DATABASE_CONNECTION_URL": postgres.url("prefect", "asyncpg"),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "OMP_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ in the repo: its tree must stay byte-identical
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    workspace = tree_hash(repo, ignore=SHARED_STATE)

    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    workers: list[subprocess.Popen] = []
    worker_logs = [(tmp_path / f"worker-{i}.log").open("w") for i in (1, 2)]
    try:
        wait_http(f"{url}/api/health", 180)
        _run([str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process", "--overwrite"], repo, env)
        for i, log in enumerate(worker_logs, start=1):  # `make workers`
            workers.append(
                subprocess.Popen(
                    [
                        str(BIN / "prefect"),
                        "worker",
                        "start",
                        "--pool",
                        POOL,
                        "--type",
                        "process",
                        "--name",
                        f"vistune-worker-{i}",
                        "--limit",
                        "1",
                    ],
                    cwd=tmp_path,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        _run([sys.executable, "-m", "flows.deploy"], repo, env)  # `make pool`: this repo's flows, from its directory

        with temporary_settings({PREFECT_API_URL: f"{url}/api"}):
            started = {
                key: run_deployment(DEPLOYMENT, parameters={"params": ui}, timeout=0) for key, ui in RUNS.items()
            }
            versions = _review(repo, started, tmp_path)
            runs = _wait_final([r.id for r in started.values()], timeout=900)
            retried = _retried_tasks([r.id for r in started.values()])
        runs = {key: runs[r.id] for key, r in started.items()}
        logs = "\n".join(p.read_text()[-3000:] for p in sorted(tmp_path.glob("worker-*.log")))
        for key, run in runs.items():
            assert run.state.is_completed(), f"run {key}: {run.state}\n{logs}"
            assert run.parameters["workspace"] == "isolated"
        a, b = runs["a"], runs["b"]
        assert a.start_time < b.end_time and b.start_time < a.end_time, "the two runs did not overlap"
        assert {r.labels.get("prefect.worker.name") for r in runs.values()} == {"vistune-worker-1", "vistune-worker-2"}
        assert retried == [], "parallel runs must not need retries (e.g. two registrations creating the store)"

        rows = asyncio.run(_rows_in_postgres(postgres.url("prefect"), [a.id, b.id]))
        assert sorted((str(r["id"]), r["state"]) for r in rows) == sorted((str(r.id), "COMPLETED") for r in (a, b))
    finally:
        for worker in workers:  # workers before the server, or they hang on a vanished API
            stop_process_group(worker, grace_s=5)  # idle by now; a Prefect 3.8 worker can take 30 s+ to exit
        stop_process_group(server)
        for log in worker_logs:
            log.close()

    # the main workspace: same files, no worktree left behind
    assert tree_hash(repo, ignore=SHARED_STATE) == workspace
    assert _run(["git", "status", "--porcelain"], repo, env) == ""
    assert _run(["git", "worktree", "list", "--porcelain"], repo, env).count("worktree ") == 1
    assert not list((repo / ".dvc" / "tmp" / "runs").iterdir())

    _assert_experiments_and_registry(repo, env, runs)
    _assert_reviews(repo, runs, versions)
