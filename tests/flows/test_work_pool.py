"""Prefect server on PostgreSQL, a process work pool, two workers running two pipeline runs at once.

Everything real: a PostgreSQL cluster, `prefect server start` on it, `prefect work-pool create`,
`python -m flows.deploy` (the deployment `make pool` creates), two `prefect worker start`
processes, and two runs of train-pipeline with different UI parameters triggered through the API.
Each run works in its own git worktree (workspace="isolated"), so they train in parallel and
leave the main workspace as it was, while both land in the main repo's DVC experiments and
MLflow registry. Tiny configuration (digits, 16 px, one epoch, the slow evaluation extras off).
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

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
POOL = "vistune-process"
DEPLOYMENT = "train-pipeline/train-pipeline-pool"
# run "a" may lose nothing and run "b" can never win, so whichever registers first, "a" ends champion
RUNS = {"a": {"lr": 0.01, "min_improvement": -1.0}, "b": {"lr": 0.002, "min_improvement": 1.0}}
# what changes in the main repo by design: git refs (experiments), the shared DVC cache, the MLflow store
SHARED_STATE = (".git", ".dvc/tmp", ".dvc/cache", "mlflow")




def _gate_without_significance_test(root: Path) -> None:
    write_params(root / "params.yaml", tiny_params_dict(
        register={"gate_test": "none"},
        evaluate={"robustness": False, "gradcam": False, "latency": False}))


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
        return await conn.fetch("SELECT id, name, state_type::text AS state FROM flow_run WHERE id = ANY($1::uuid[])",
                                run_ids)
    finally:
        await conn.close()


def _assert_experiments_and_registry(repo: Path, env: dict, runs: dict) -> None:
    """Both runs are DVC experiments and MLflow runs of the main repo, with their UI parameters; "a" is champion."""
    exps = {r["Experiment"]: r for r in csv.DictReader(io.StringIO(_run(["dvc", "exp", "show", "--csv"], repo, env)))}
    for key, run in runs.items():
        assert run.name in exps, list(exps)
        assert float(exps[run.name]["train.lr"]) == RUNS[key]["lr"]
        assert float(exps[run.name]["register.min_improvement"]) == RUNS[key]["min_improvement"]

    # ... and MLflow runs in the main repo's store, tagged with those experiments; "a" is champion
    import mlflow

    uri = f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = client.get_experiment_by_name("vistune").experiment_id
    mlflow_runs = {}
    for key, run in runs.items():
        tagged = client.search_runs([experiment_id], filter_string=f"tags.`vistune.lineage.dvc_experiment` = '{run.name}'")
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

    repo = tiny_git_repo(tmp_path / "vistune", prepare=_gate_without_significance_test)
    postgres.create_database("prefect")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ) | {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": f"{url}/api", "PREFECT_API_DATABASE_CONNECTION_URL": postgres.url("prefect", "asyncpg"),
        "PREFECT_WORKER_QUERY_SECONDS": "2", "OMP_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ in the repo: its tree must stay byte-identical
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    workspace = tree_hash(repo, ignore=SHARED_STATE)

    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    workers: list[subprocess.Popen] = []
    worker_logs = [(tmp_path / f"worker-{i}.log").open("w") for i in (1, 2)]
    try:
        wait_http(f"{url}/api/health", 180)
        _run([str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process", "--overwrite"], repo, env)
        for i, log in enumerate(worker_logs, start=1):  # `make workers`
            workers.append(subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process",
                 "--name", f"vistune-worker-{i}", "--limit", "1"],
                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        _run([sys.executable, "-m", "flows.deploy"], repo, env)  # `make pool`: this repo's flows, from its directory

        with temporary_settings({PREFECT_API_URL: f"{url}/api"}):
            started = {key: run_deployment(DEPLOYMENT, parameters={"params": ui}, timeout=0)
                       for key, ui in RUNS.items()}
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
