"""End to end: a real `dvc repro` in a temp git repo, then the Prefect flow over the same repo.

Small configuration (digits, 30 images per class, 32 px, five epochs) so it fits 2 CPU cores and
still learns: the model must beat a floor derived from a scikit-learn logistic regression on
the same train/test split (see `test_the_model_learned`).
Last, `python -m flows.serve` serves this repo's deployments: a train-pipeline run triggered through
the Prefect API with `register.approval: required` reruns only `register` (nothing else changed),
pauses for a reviewer with nothing held and is approved through the API.
A deployment run through a real Prefect server with UI parameters (-> DVC experiment with those
params -> MLflow run tagged with it) is covered by tests/flows/test_work_pool.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import stop_process_group, tiny_git_repo, tiny_params_dict, write_params

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
LEARNS = {
    "data": {"max_per_class": 30},
    "augment": {"image_size": 32},
    "train": {"epochs": 5, "batch_size": 16, "warmup_epochs": 1.0},
}
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


def _ran(out: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", out))


def test_code_edit_in_vistune_train_reruns_exactly_its_dependents(repo: Path):
    """Editing vistune/train/adversarial.py (a dep of train, evaluate and compress; ingest, validate and
    augment do not run it) makes exactly those three out of date, as `dvc status` and `dvc repro --dry`
    report (register follows when their outputs change: the real repro below shows it). Restored, nothing is."""
    edited = repo / "vistune" / "train" / "adversarial.py"
    original = edited.read_text()
    try:
        edited.write_text(original + "\n# edited by a test\n")
        proc = subprocess.run(
            ["dvc", "status", "--json"], cwd=repo, env=_env(), capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stderr
        status = json.loads(proc.stdout)
        assert set(status) == {"train", "evaluate", "compress"}, status
        assert all(
            {"changed deps": {"vistune/train": "modified"}} in entries
            or {"changed deps": {"vistune/train/adversarial.py": "modified"}} in entries
            for entries in status.values()
        ), status
        assert _ran(_run(["dvc", "repro", "--dry"], repo)) == {"train", "evaluate", "compress"}
    finally:
        edited.write_text(original)
    assert _ran(_run(["dvc", "repro", "--dry"], repo)) == set()


def test_param_change_reruns_only_downstream(repo: Path):
    """A real repro after an `evaluate` param change runs evaluate and register (it reads evaluate's
    metrics, whose latency figures are measured afresh), and nothing upstream or beside (compress)."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluate"]["batch_size"] = 7
    write_params(repo / "params.yaml", params)
    out = _run(["dvc", "repro"], repo)
    assert _ran(out) == {"evaluate", "register"}, out[-3000:]


@pytest.fixture(scope="module")
def prefect_server():
    """One Prefect test server for this module's flow runs (in-process and served)."""
    from tests.prefect_harness import prefect_server as temporary_server

    with temporary_server():
        yield


def test_prefect_flow_runs_the_same_dvc_stages(repo: Path, prefect_server):
    from flows.pipeline import train_pipeline

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["register"]["min_improvement"] = -1.0  # any new version beats the champion
    write_params(repo / "params.yaml", params)
    result = train_pipeline(repo=str(repo))
    assert result["stages"]["train"] == "skipped (unchanged)"
    assert result["stages"]["register"] == "ran"
    assert result["registration"]["promoted"] is True
    _, client = _champion(repo)
    assert (
        str(client.get_model_version_by_alias("vistune-classifier", "champion").version)
        == result["registration"]["version"]
    )
    assert int(result["registration"]["version"]) >= 2
    run = client.get_run(result["registration"]["run_id"])  # one name in Prefect, DVC and MLflow
    assert run.info.run_name == result["flow_run"]["name"] == result["experiment"]
    assert run.data.tags["vistune.lineage.prefect_flow_run_name"] == result["flow_run"]["name"]


def test_served_run_pauses_for_approval_and_is_approved_through_the_api(repo: Path, prefect_server, tmp_path: Path):
    """The served train-pipeline deployment, shared workspace: the version passes the gate, the flow run
    waits for a reviewer holding no lock (workspace, registry file lock, registry concurrency slot), and
    the form's input sent through the API makes it champion, recorded in the alias history."""
    from prefect.deployments import run_deployment
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL

    from integrations import history, tags as T
    from tests.flows import approval_checks as approval

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["register"].update(approval="required", gate_test="none")  # register's params only
    write_params(repo / "params.yaml", params)
    upstream = {k: v for k, v in yaml.safe_load((repo / "dvc.lock").read_text())["stages"].items() if k != "register"}
    _, client = _champion(repo)
    champion, challenger = approval.champion(client), approval.challenger(client)
    env = _env() | {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "OMP_NUM_THREADS": "1",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    serve = subprocess.Popen(
        [sys.executable, "-m", "flows.serve"],
        cwd=repo,
        env=env,
        stdout=(logs / "serve.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        approval.wait_for_deployment("train-pipeline/train-pipeline", [serve], logs)
        served = run_deployment("train-pipeline/train-pipeline", timeout=0)
        approval.wait_state(served.id, {"PAUSED"}, logs)
        receipt = json.loads((repo / "data" / "registry" / "registration.json").read_text())
        version = str(receipt["version"])
        assert receipt["pending_approval"] and not receipt["promoted"] and int(version) > int(champion)
        approval.paused_for(served.id, client, version, logs)
        assert (approval.champion(client), approval.challenger(client)) == (champion, version)
        approval.nothing_held(repo)
        resume_flow_run(served.id, run_input={"decision": "approve", "reviewer": "alice", "comment": "looks right"})
        approval.wait_state(served.id, {"COMPLETED"}, logs)
    finally:
        stop_process_group(serve, grace_s=5)

    assert {
        k: v for k, v in yaml.safe_load((repo / "dvc.lock").read_text())["stages"].items() if k != "register"
    } == upstream  # only register ran
    assert (approval.champion(client), approval.challenger(client)) == (version, version)
    assert client.get_model_version(approval.NAME, version).tags[T.APPROVAL] == "approved"
    entries = history.read(client, approval.NAME)
    assert [(e.action, e.alias, e.from_version, e.to_version, e.actor) for e in entries[-2:]] == [
        ("gate", "challenger", challenger, version, f"flow:{served.name}"),
        ("approval", "champion", champion, version, "reviewer:alice"),
    ]
    assert entries[-1].reason == "approved by reviewer:alice: looks right"
    assert history.unrecorded_changes(client, approval.NAME) == []  # the registry is what the history says
