"""End to end: a real `dvc repro` in a temp git repo, then the Prefect flow over the same repo.

Tiny configuration (digits, 10 images per class, 16 px, one epoch) so it fits 2 CPU cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import stop_process_group, tiny_git_repo, write_params

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _run(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-4000:]}"
    return out


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return tiny_git_repo(tmp_path_factory.mktemp("e2e") / "vistune")


def _champion(root: Path):
    import mlflow

    uri = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    return uri, client


def test_dvc_repro_builds_and_registers_a_champion(repo: Path):
    out = _run(["dvc", "repro"], repo)
    stages = ("ingest", "validate", "augment", "train", "evaluate", "compress", "register")
    for stage in stages:
        assert f"Running stage '{stage}'" in out
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(stages)

    import mlflow

    uri, client = _champion(repo)
    champ = client.get_model_version_by_alias("vistune-classifier", "champion")
    assert champ.tags["vistune.gate"] == "promoted"
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/vistune-classifier@champion")
    files = sorted((repo / "data" / "raw" / "test").rglob("*.png"))[:4]
    pred = model.predict(pd.DataFrame({"path": [str(f) for f in files]}))
    assert len(pred) == 4
    assert set(pred["label"]) <= {str(d) for d in range(10)}
    assert pred.filter(like="p_").sum(axis=1).round(4).eq(1.0).all()


def test_second_repro_runs_nothing(repo: Path):
    out = _run(["dvc", "repro"], repo)
    assert "Running stage" not in out
    assert "Data and pipelines are up to date" in out or "didn't change" in out


def test_param_change_reruns_only_downstream(repo: Path):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluate"]["batch_size"] = 7
    write_params(repo / "params.yaml", params)
    out = _run(["dvc", "repro"], repo)
    assert "Running stage 'evaluate'" in out
    for upstream in ("ingest", "validate", "augment", "train"):
        assert f"Running stage '{upstream}'" not in out


def test_prefect_flow_runs_the_same_dvc_stages(repo: Path):
    from prefect.testing.utilities import prefect_test_harness

    from flows.pipeline import train_pipeline

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["register"]["min_improvement"] = -1.0  # any new version beats the champion
    write_params(repo / "params.yaml", params)
    with prefect_test_harness(server_startup_timeout=90):
        result = train_pipeline(repo=str(repo))
    assert result["stages"]["train"] == "skipped (unchanged)"
    assert result["stages"]["register"] == "ran"
    assert result["registration"]["promoted"] is True
    _, client = _champion(repo)
    assert str(client.get_model_version_by_alias("vistune-classifier", "champion").version) == result["registration"]["version"]
    assert int(result["registration"]["version"]) >= 2


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_deployment_run_with_ui_parameters(repo: Path, tmp_path: Path):
    """A real Prefect server, the served deployments, a run triggered through the API with
    non-default parameters: it completes, is a DVC experiment with those params, and its MLflow
    run carries the experiment's name."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.wait import wait_http

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = _env() | {"PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": f"{url}/api",
                    "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    served = None
    try:
        wait_http(f"{url}/api/health", 120)
        served = subprocess.Popen([sys.executable, "-m", "flows.serve"], cwd=repo, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        with temporary_settings({PREFECT_API_URL: f"{url}/api"}):
            import anyio

            from prefect.client.orchestration import get_client

            async def _wait_for_deployment():
                async with get_client() as client:
                    for _ in range(120):
                        try:
                            return await client.read_deployment_by_name("train-pipeline/train-pipeline")
                        except Exception:
                            await anyio.sleep(1)
                raise AssertionError("deployment train-pipeline never appeared")

            anyio.run(_wait_for_deployment)
            run = run_deployment("train-pipeline/train-pipeline", parameters={"params": {"epochs": 2}}, timeout=900)
        assert run.state.is_completed(), run.state
        exps = _run(["dvc", "exp", "show", "--csv"], repo)
        assert run.name in exps
        import csv
        import io

        rows = [r for r in csv.DictReader(io.StringIO(exps)) if r.get("Experiment") == run.name]
        assert len(rows) == 1, exps[:2000]
        assert rows[0]["train.epochs"] == "2"
        _, client = _champion(repo)
        runs = client.search_runs([client.get_experiment_by_name("vistune").experiment_id],
                                  filter_string=f"tags.`vistune.dvc_experiment` = '{run.name}'")
        assert len(runs) == 1
        assert runs[0].data.params["train.epochs"] == "2"
    finally:
        stop_process_group(served)
        stop_process_group(server)
