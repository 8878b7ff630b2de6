"""The `train-pipeline` flow: validate -> augment -> train -> evaluate -> register, via DVC.

Run it with `python -m flows.pipeline` (a temporary Prefect server is started when none is
configured) or serve it for the Prefect UI. Stages DVC finds unchanged are skipped by DVC.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.dvc import STAGES, run_dvc

REPO = Path(__file__).resolve().parent.parent


@task(retries=2, retry_delay_seconds=[5, 30], task_run_name="{stage}")
def run_stage(stage: str, repo: str, force: bool = False) -> str:
    """One DVC stage; retried on failure (a killed `train` resumes from its checkpoint)."""
    logger = get_run_logger()
    args = ["repro", "--single-item", stage] + (["--force"] if force else [])
    out = run_dvc(args, Path(repo), log=logger.info)
    skipped = "didn't change, skipping" in out
    return "skipped (unchanged)" if skipped else "ran"


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


@task
def publish_summary(repo: str) -> dict:
    """A markdown artifact: test metrics, data quality, and the registry decision."""
    root = Path(repo)
    metrics = _read(root / "data/eval/metrics.json")
    quality = _read(root / "data/validated/summary.json")
    reg = _read(root / "data/registry/registration.json")
    rows = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in sorted(metrics.items()))
    md = (
        f"## vistune run\n\n| metric | value |\n|---|---|\n{rows}\n\n"
        f"**Data:** {quality.get('n_good', '?')} good images, {quality.get('n_quarantined', '?')} quarantined.\n\n"
        f"**Registry:** `{reg.get('model_name', '?')}` v{reg.get('version', '?')} — "
        f"{'promoted to champion' if reg.get('promoted') else 'kept as challenger'}: {reg.get('reason', '')}\n\n"
        f"MLflow run `{reg.get('run_id', '?')}` in `{reg.get('tracking_uri', '?')}`\n"
    )
    create_markdown_artifact(markdown=md, key="vistune-run-summary", description="vistune pipeline summary")
    return {"metrics": metrics, "registration": reg}


@flow(name="train-pipeline", log_prints=True)
def train_pipeline(repo: str = str(REPO), force: bool = False) -> dict:
    """Run every stage of dvc.yaml in order through DVC, then publish a summary artifact."""
    states = {}
    for stage in STAGES:
        states[stage] = run_stage(stage, repo, force)
    summary = publish_summary(repo)
    summary["stages"] = states
    summary["flow_run"] = {"id": str(flow_run.id), "name": flow_run.name}
    return summary


if __name__ == "__main__":
    result = train_pipeline(force="--force" in sys.argv[1:])
    print(json.dumps({k: result[k] for k in ("flow_run", "stages", "registration")}, indent=2, default=str))
