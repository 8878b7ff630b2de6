"""The `train-pipeline` flow: validate -> augment -> train -> evaluate -> register, via DVC.

Run it with `python -m flows.pipeline` (a temporary Prefect server is started when none is
configured) or trigger the served deployment from the Prefect UI. Every stage is
`dvc repro --single-item <stage>`, so DVC skips unchanged stages and a flow run shares one
cache and one dvc.lock with `dvc repro`. Parameters from the UI are written into params.yaml
(as `dvc exp run --set-param` does) and the finished run is saved with `dvc exp save`, so
`dvc exp show` and the MLflow run (tag `vistune.dvc_experiment`) name the same experiment.
"""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.dvc import STAGES, run_dvc
from flows.params import PipelineParams, apply_overrides

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def workspace_lock(repo: Path, logger) -> Iterator[None]:
    """One pipeline run at a time per DVC workspace: a second run waits here, and says so."""
    lock_dir = repo / ".dvc" / "tmp"
    lock_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_dir / "vistune-pipeline.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.info("another vistune run holds the DVC workspace of %s; waiting for it to finish", repo)
        lock.acquire(timeout=6 * 3600)
    try:
        yield
    finally:
        lock.release()


def _stage_env(experiment: str) -> dict[str, str]:
    return {"VISTUNE_DVC_EXPERIMENT": experiment, "VISTUNE_PREFECT_FLOW_RUN_ID": str(flow_run.id or ""),
            "VISTUNE_PREFECT_FLOW_RUN_NAME": str(flow_run.name or "")}


@task(retries=2, retry_delay_seconds=[5, 30], timeout_seconds=6 * 3600, task_run_name="{stage}")
def run_stage(stage: str, repo: str, force: bool = False, experiment: str = "") -> str:
    """One DVC stage; retried with backoff (a killed `train` resumes from its checkpoint)."""
    logger = get_run_logger()
    args = ["repro", "--single-item", stage] + (["--force"] if force else [])
    out = run_dvc(args, Path(repo), log=logger.info, env=_stage_env(experiment))
    return "skipped (unchanged)" if "didn't change, skipping" in out else "ran"


@task(task_run_name="apply-params")
def apply_params(params: PipelineParams, repo: str) -> dict:
    overrides = params.overrides()
    if overrides:
        get_run_logger().info("setting params (as dvc exp run --set-param): %s", " ".join(params.set_param_args()))
    apply_overrides(Path(repo) / "params.yaml", overrides)
    return overrides


def _has_commit(repo: Path) -> bool:
    return subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=repo, capture_output=True).returncode == 0


@task(task_run_name="record-experiment")
def record_experiment(repo: str, name: str) -> str:
    """`dvc exp save`: params, dvc.lock and metrics of this run become a named DVC experiment."""
    if not _has_commit(Path(repo)):
        get_run_logger().warning("no git commit in %s: DVC experiments need one; run not saved as an experiment", repo)
        return ""
    run_dvc(["exp", "save", "--name", name, "--force"], Path(repo), log=get_run_logger().info)
    return name


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


@task
def publish_summary(repo: str, experiment: str) -> dict:
    """A markdown artifact: test metrics, data quality, and the registry decision."""
    root = Path(repo)
    metrics = _read(root / "data/eval/metrics.json")
    quality = _read(root / "data/validated/summary.json")
    reg = _read(root / "data/registry/registration.json")
    rows = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
                     for k, v in sorted(metrics.items()) if not isinstance(v, (dict, list)))
    md = (
        f"## vistune run `{experiment}`\n\n| metric | value |\n|---|---|\n{rows}\n\n"
        f"**Data:** {quality.get('n_good', '?')} good images, {quality.get('n_quarantined', '?')} quarantined.\n\n"
        f"**Registry:** `{reg.get('model_name', '?')}` v{reg.get('version', '?')} — "
        f"{'promoted to champion' if reg.get('promoted') else 'kept as challenger'}: {reg.get('reason', '')}\n\n"
        f"MLflow run `{reg.get('run_id', '?')}` in `{reg.get('tracking_uri', '?')}`; "
        f"DVC experiment `{experiment}` (`dvc exp show`).\n"
    )
    create_markdown_artifact(markdown=md, key="vistune-run-summary", description="vistune pipeline summary")
    return {"metrics": metrics, "registration": reg}


@flow(name="train-pipeline", log_prints=True)
def train_pipeline(params: PipelineParams = PipelineParams(), repo: str = str(REPO), force: bool = False,
                   save_experiment: bool = True) -> dict:
    """Run every stage of dvc.yaml in order through DVC, record the DVC experiment, publish a summary."""
    logger = get_run_logger()
    experiment = str(flow_run.name or "vistune-run")
    with workspace_lock(Path(repo), logger):
        overrides = apply_params(params, repo)
        states = {stage: run_stage(stage, repo, force, experiment) for stage in STAGES}
        saved = record_experiment(repo, experiment) if save_experiment else ""
        summary = publish_summary(repo, saved or experiment)
    summary.update(stages=states, overrides=overrides, experiment=saved,
                   flow_run={"id": str(flow_run.id), "name": flow_run.name})
    return summary


@flow(name="validate-only", log_prints=True)
def validate_only(data_source: str | None = None, repo: str = str(REPO)) -> dict:
    """Ingest and validate a data source without training: a cheap data-quality check."""
    with workspace_lock(Path(repo), get_run_logger()):
        apply_params(PipelineParams(data_source=data_source), repo)
        states = {stage: run_stage(stage, repo) for stage in ("ingest", "validate")}
    return {"stages": states, "summary": _read(Path(repo) / "data/validated/summary.json")}


if __name__ == "__main__":
    result = train_pipeline(force="--force" in sys.argv[1:], save_experiment="--no-exp" not in sys.argv[1:])
    print(json.dumps({k: result[k] for k in ("flow_run", "experiment", "stages", "registration")}, indent=2, default=str))
