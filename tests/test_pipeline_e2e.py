"""End to end: a real `dvc repro` in a temp git repo, then the Prefect flow over the same repo.

Small configuration (digits, 30 images per class, 32 px, five epochs) so it fits 2 CPU cores and
still learns: the model must beat a floor derived from a scikit-learn logistic regression on
the same train/test split (see `test_the_model_learned`).
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

from tests.conftest import tiny_git_repo, tiny_params_dict, write_params

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


# the smallest run measured to learn (2-core CPU, 2026-12-02): tiny's 10 images x 16 px x 1 epoch stays at chance
LEARNS = {"data": {"max_per_class": 30}, "augment": {"image_size": 32},
          "train": {"epochs": 5, "batch_size": 16, "warmup_epochs": 1.0}}
# the model must close this share of the gap between chance and the reference's accuracy
SHARE_OF_REFERENCE_GAIN = 0.25


def _learnable_params(root: Path) -> None:
    write_params(root / "params.yaml", tiny_params_dict(**LEARNS))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return tiny_git_repo(tmp_path_factory.mktemp("e2e") / "vistune", prepare=_learnable_params)


def _reference_accuracy(prepared: Path) -> float:
    """Multinomial logistic regression on raw pixels of the same prepared train/test arrays: an
    independent reference (scikit-learn, none of vistune's training code)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    def xy(split: str):
        x = np.load(prepared / f"{split}_images.npy")
        return x.reshape(len(x), -1).astype(np.float64) / 255.0, np.load(prepared / f"{split}_labels.npy")

    (xtr, ytr), (xte, yte) = xy("train"), xy("test")
    return float(LogisticRegression(max_iter=2000).fit(xtr, ytr).score(xte, yte))


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


def test_the_model_learned(repo: Path):
    """floor = chance + SHARE_OF_REFERENCE_GAIN * (reference - chance); an untrained net scores chance."""
    import json

    metrics = json.loads((repo / "data" / "eval" / "metrics.json").read_text())
    classes = json.loads((repo / "data" / "prepared" / "meta.json").read_text())["classes"]
    chance = 1.0 / len(classes)
    reference = _reference_accuracy(repo / "data" / "prepared")
    floor = chance + SHARE_OF_REFERENCE_GAIN * (reference - chance)
    print(f"test accuracy {metrics['test_accuracy']:.4f}; logistic regression {reference:.4f}; floor {floor:.4f}")
    assert reference > 0.8  # the reference itself is sane on this split
    assert metrics["test_accuracy"] > floor, (metrics["test_accuracy"], reference, floor)


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
    run = client.get_run(result["registration"]["run_id"])  # one name in Prefect, DVC and MLflow
    assert run.info.run_name == result["flow_run"]["name"] == result["experiment"]
    assert run.data.tags["vistune.lineage.prefect_flow_run_name"] == result["flow_run"]["name"]
