"""The `score` flow: batch predictions with a registered model, as a Prefect run with artifacts.

`python -m flows.score SOURCE` runs it from a shell; the served deployment `score` (flows/serve.py)
takes the same parameters from the UI. The work is `app.scoring.score` (the same as
`vistune score`): validation, predictions.csv tracked by DVC, drift against the model's training data.
Artifacts: label counts, the least confident images, and the drift verdict.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from app import scoring
from flows.retry import retry_unless_user_error
from vistune.config import load_params
from vistune.evaluate import drift
from vistune.layout import Layout

REPO = Path(__file__).resolve().parent.parent


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_unless_user_error)
def score_images(source: str, alias: str, version: int | None, out: str, repo: str, track: bool) -> dict:
    root = Path(repo).resolve()
    out_dir = Path(out) if Path(out).is_absolute() else root / out
    result = scoring.score(
        source,
        load_params(root / "params.yaml"),
        root,
        out_dir,
        alias=alias,
        version=None if version is None else str(version),
        progress=False,
    )
    tracked = scoring.track_with_dvc(out_dir / "predictions.csv", root) if track else None
    get_run_logger().info("%s", scoring.report(result))
    return {
        "summary": result.summary,
        "labels": result.label_counts(),
        "least_confident": result.least_confident(),
        "drift": result.drift.as_metrics(),
        "drift_line": drift.summary_line(result.drift),
        "dvc_file": str(tracked) if tracked else "",
    }


@flow(name="score")
def score_flow(
    source: str,
    alias: str = "champion",
    version: int | None = None,
    out: str = str(Layout().score_dir),
    track: bool = True,
    repo: str = str(REPO),
) -> dict:
    """Score a batch of images; artifacts: label counts, least confident images, drift.

    Args:
        source: Folder, .zip/.tar(.gz) archive or .csv manifest (path[,label]) of images
        alias: Registered model alias to score with
        version: Model version number (overrides alias)
        out: Output folder, relative to the repository
        track: `dvc add` predictions.csv so the scores are versioned
        repo: Repository whose params.yaml and registry are used
    """
    res = score_images(source, alias, version, out, repo, track)
    s = res["summary"]
    create_table_artifact(
        table=res["labels"],
        key="vistune-score-labels",
        description=f"predicted labels, {s['n_scored']} images, {s['model']}",
    )
    create_table_artifact(
        table=res["least_confident"],
        key="vistune-score-least-confident",
        description="the least confident predictions: look at these first",
    )
    accuracy = f"\naccuracy against the source's labels: {s['accuracy']:.4f}" if "accuracy" in s else ""
    create_markdown_artifact(
        key="vistune-score-summary",
        description="batch scoring summary",
        markdown=(
            f"**{s['n_scored']}** images scored with **{s['model']}** on {s['device']}, "
            f"{s['n_quarantined']} not scored (quarantine.csv){accuracy}\n\n{res['drift_line']}"
        ),
    )
    return res


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m flows.score SOURCE   (or `vistune score SOURCE`)")
    score_flow(sys.argv[1])
