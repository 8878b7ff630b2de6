"""Stage tasks against real DVC in a temp repo under a real (test-harness) Prefect server.

A stage that fails once is retried and completes; a training process killed (SIGKILL) three
times is retried, resumes from its checkpoint and ends in one model version; a stage that always fails ends the flow
Failed with a clear message and leaves the previous outputs, dvc.lock and the MLflow champion
as they were; an unchanged stage is served from Prefect's cache keyed on its dvc.lock entry.
Retry delays are set to 0 on the task copy used here; production delays are untouched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import tiny_git_repo, tiny_params_dict, tree_hash, write_params
from vistune.layout import Layout

BIN = Path(sys.executable).parent

FLAKY = '''"""Test-only stage: fails on its first attempt, succeeds on the second."""
from pathlib import Path
import sys

attempts = Path("flaky.attempts")
n = int(attempts.read_text()) + 1 if attempts.exists() else 1
attempts.write_text(str(n))
if n == 1:
    sys.exit("flaky: transient failure on attempt 1")
Path("data/flaky.txt").write_text(f"ok after {n} attempts\\n")
'''

FLAKY_STAGE = """
  flaky:
    cmd: python flaky.py
    deps:
      - flaky.py
    outs:
      - data/flaky.txt
"""


def _run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory, harness) -> Path:
    """A tiny git repo with an extra `flaky` stage, and ingest+validate built by `dvc repro`. No label-issue
    search in validate (a backbone's features and K folds each time validate runs): these tests are about
    retries, caching and rollback; tests/stages/test_validate_labels.py covers the search."""

    def add_flaky(root: Path) -> None:
        write_params(root / "params.yaml", tiny_params_dict(validate={"label_issue_folds": 0, "on_lookalike": "off"}))
        (root / "flaky.py").write_text(FLAKY)
        dvc_yaml = (root / "dvc.yaml").read_text()
        (root / "dvc.yaml").write_text(dvc_yaml.replace("\nplots:", FLAKY_STAGE + "\nplots:", 1))
        with (root / ".gitignore").open("a") as f:
            f.write("flaky.attempts\n")

    root = tiny_git_repo(tmp_path_factory.mktemp("retries") / "vistune", prepare=add_flaky)
    _run(["dvc", "repro", "validate"], root)
    return root


def _task_runs(flow_run_id) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        return {r.name: (r, [s.name for s in client.read_task_run_states(r.id)]) for r in runs}


def test_stage_that_fails_once_is_retried_and_completes(repo: Path):
    from prefect import flow

    from flows.pipeline import run_stage

    @flow(name="one-stage")
    def one_stage(stage: str, repo: str) -> str:
        return run_stage.with_options(retry_delay_seconds=0)(stage, repo)

    state = one_stage("flaky", str(repo), return_state=True)
    assert state.is_completed(), state
    assert state.result() == "ran"
    ((task_run, history),) = _task_runs(state.state_details.flow_run_id).values()
    assert task_run.run_count == 2
    assert "Retrying" in history and history[-1] == "Completed"
    assert (repo / "flaky.attempts").read_text() == "2"
    assert (repo / "data/flaky.txt").read_text() == "ok after 2 attempts\n"


def _training_pids(repo: Path) -> list[int]:
    """PIDs of `python -m stages.train` processes working in `repo` (read from /proc)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if b"stages.train" in cmdline and Path(os.readlink(proc / "cwd")) == repo:
                pids.append(int(proc.name))
        except (OSError, ValueError):
            continue  # not a process, or it ended while we looked
    return pids


def _kill_training(repo: Path, checkpoint: Path, times: int, seed: int, killed: list) -> None:
    """SIGKILL the training process `times` times, each at a random point after it checkpointed once."""
    import random
    import signal
    import time

    rng = random.Random(seed)
    deadline = time.monotonic() + 600
    while len(killed) < times and time.monotonic() < deadline:
        pids = _training_pids(repo)
        if not pids:
            time.sleep(0.05)
            continue
        seen = checkpoint.stat().st_mtime_ns if checkpoint.exists() else 0
        while _training_pids(repo) == pids and (checkpoint.stat().st_mtime_ns if checkpoint.exists() else 0) == seen:
            time.sleep(0.02)  # this attempt has not finished an epoch yet
        if _training_pids(repo) != pids:
            continue  # it ended on its own
        time.sleep(rng.uniform(0.0, 0.25))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        while _training_pids(repo):
            time.sleep(0.02)


@pytest.mark.slow
def test_training_killed_three_times_resumes_and_registers_once(repo: Path, tmp_path: Path):
    """kill -9 of `python -m stages.train` at three random points: the task is retried, each retry
    resumes from the last checkpoint, and the run ends with one model version, no temp files."""
    import threading

    import pandas as pd
    import yaml
    from prefect import flow

    from flows.pipeline import run_stage

    _run(["dvc", "repro", "augment"], repo)
    original = (repo / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["train"].update(model="timm:resnet10t", pretrained="none", epochs=5, batch_size=8)
    params["evaluate"].update(robustness=False, gradcam=False, latency=False)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"  # its own registry: other tests here fake a champion
    params["register"].update(tracking_uri=store, artifact_root=str(tmp_path / "artifacts"))
    write_params(repo / "params.yaml", params)
    lay = Layout(repo)
    checkpoint = lay.checkpoint

    @flow(name="train-killed")
    def train_only(repo: str) -> str:
        return run_stage.with_options(retries=3, retry_delay_seconds=0)("train", repo)

    killed: list[int] = []
    killer = threading.Thread(target=_kill_training, args=(repo, checkpoint, 3, 8, killed), daemon=True)
    killer.start()
    try:
        state = train_only(str(repo), return_state=True)
        killer.join(timeout=30)
        assert len(killed) == 3, f"expected 3 kills, got {len(killed)} (training ended too soon?)"
        assert state.is_completed(), state
        ((task_run, history),) = _task_runs(state.state_details.flow_run_id).values()
        assert task_run.run_count == 4 and history.count("Retrying") == 3 and history[-1] == "Completed"
        assert list(pd.read_csv(lay.train_history).epoch) == list(range(1, 6))  # each epoch exactly once
        assert [p.name for p in checkpoint.parent.iterdir()] == [checkpoint.name]
        assert not [p for p in lay.data.rglob("*") if ".tmp" in p.name or p.name.startswith("tmp")]
        _run(["dvc", "repro", "register"], repo)
        assert _versions(store) == ["1"]  # one version, nothing half-registered
        assert "changed" not in _run(["dvc", "status"], repo)
    finally:
        (repo / "params.yaml").write_text(original)


def _versions(uri: str) -> list[str]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    return sorted(str(v.version) for v in client.search_model_versions("name='vistune-classifier'"))


def test_unchanged_stage_is_cached_on_its_dvc_lock_entry(repo: Path):
    from flows.pipeline import validate_only

    # an earlier test in this module restores params.yaml after changing register.tracking_uri (a validate
    # param: the drift check reads the champion), so bring validate up to date first, as the fixture did
    _run(["dvc", "repro", "validate"], repo)
    first = validate_only(repo=str(repo), return_state=True)
    second = validate_only(repo=str(repo), return_state=True)
    assert first.is_completed() and second.is_completed()
    second_runs = _task_runs(second.state_details.flow_run_id)
    assert {name: hist[-1] for name, (_, hist) in second_runs.items() if name in ("ingest", "validate")} == {
        "ingest": "Cached",
        "validate": "Cached",
    }
    assert second.result()["stages"] == {"ingest": "skipped (unchanged)", "validate": "skipped (unchanged)"}


def _champion(root: Path, create: bool = False) -> str:
    """The champion version in the repo's MLflow store; `create` registers one first (real MLflow)."""
    import mlflow

    uri = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = "vistune-classifier"
    if create:
        exp = client.create_experiment("vistune", artifact_location=str(root / "mlflow" / "artifacts"))
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, "test_macro_f1", 0.5)
        client.set_terminated(run.info.run_id)
        client.create_registered_model(name)
        mv = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
        client.set_registered_model_alias(name, "champion", mv.version)
    versions = client.search_model_versions(f"name='{name}'")
    return f"{client.get_model_version_by_alias(name, 'champion').version}/{len(versions)}"


def test_stage_that_always_fails_leaves_outputs_and_champion(repo: Path, tmp_path: Path, monkeypatch):
    from flows import pipeline
    from flows.dvc_cli import StageFailed
    from flows.params import PipelineParams

    monkeypatch.setattr(pipeline, "run_stage", pipeline.run_stage.with_options(retry_delay_seconds=0))
    champion = _champion(repo, create=True)
    before = {
        p: (repo / p).read_bytes()
        for p in ("params.yaml", "dvc.lock", "data/ingest/report.json", "data/validated/summary.json")
    }
    raw, validated = tree_hash(repo / "data/raw"), tree_hash(repo / "data/validated")

    bad = tmp_path / "no-such-images"
    with pytest.raises(StageFailed) as err:
        pipeline.train_pipeline(
            params=PipelineParams(data_source=str(bad), epochs=2), repo=str(repo), save_experiment=False
        )
    message = str(err.value)
    assert "failed at stage 'ingest' on its first attempt (a configuration or data error is not retried)" in message
    assert "rolled back" in message and "data.source is not a directory" in message

    assert {p: (repo / p).read_bytes() for p in before} == before
    assert tree_hash(repo / "data/raw") == raw and tree_hash(repo / "data/validated") == validated
    assert _champion(repo) == champion
    assert "changed" not in _run(["dvc", "status", "ingest", "validate"], repo)


def test_run_with_form_values_gives_the_workspace_back(repo: Path, tmp_path: Path):
    """A run given a form value uses it, then leaves params.yaml, dvc.lock and the outputs as it found
    them: the next run with empty fields means the workspace's params.yaml again."""
    import shutil

    from flows.pipeline import validate_only

    source = tmp_path / "source"  # 3 classes x 6 of the repo's own digits, as one folder of class folders
    for label in ("0", "1", "2"):
        (source / label).mkdir(parents=True)
        for i, png in enumerate(sorted((repo / "data/raw/train" / label).glob("*.png"))[:6]):
            shutil.copy2(png, source / label / f"{i}.png")
    kept = ("params.yaml", "dvc.lock", "data/ingest/report.json", "data/validated/summary.json")
    before = {p: (repo / p).read_bytes() for p in kept}
    raw = tree_hash(repo / "data/raw")

    state = validate_only(data_source=str(source), repo=str(repo), return_state=True)
    assert state.is_completed(), state
    assert state.result()["summary"]["n_good"] == 18  # the form value was used ...
    assert {p: (repo / p).read_bytes() for p in kept} == before  # ... and the workspace is as it was
    assert tree_hash(repo / "data/raw") == raw
    assert "changed" not in _run(["dvc", "status", "ingest", "validate"], repo)
