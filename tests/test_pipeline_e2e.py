"""End to end: a real `dvc repro` in a temp git repo, then the Prefect flow over the same repo.

Tiny configuration (digits, 10 images per class, 16 px, one epoch) so it fits 2 CPU cores.
A deployment run through a real Prefect server with UI parameters (-> DVC experiment with those
params -> MLflow run tagged with it) is covered by tests/flows/test_work_pool.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import tiny_git_repo, write_params

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


def test_dvc_repro_builds_and_registers_a_champion(repo: Path, monkeypatch):
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
    monkeypatch.setenv("VISTUNE_IMAGE_ROOT", str(repo))  # `path` inputs must lie under the image root
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
