"""The run report a `train-pipeline` flow run leaves in the Prefect UI: a markdown summary (metrics,
data, registry decision, DVC experiment), table artifacts (validation summary, test confusion counts)
and links to the MLflow run and model version. Every file is found through `vistune.layout.Layout`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from vistune.layout import Layout

VALIDATION_KEYS = ("n_files", "n_good", "n_quarantined", "n_train", "n_val", "n_test", "n_classes",
                   "imbalance_ratio", "bad_fraction", "n_exact_duplicates", "n_near_duplicates", "n_leaked",
                   "n_warnings", "expectations_passed")


def read_json(path: Path) -> dict:
    """A stage's JSON output, {} when that stage has not written it."""
    return json.loads(path.read_text()) if path.is_file() else {}


def mlflow_ui() -> str:
    """Base URL of the MLflow UI that `make up` starts (override with VISTUNE_MLFLOW_UI)."""
    return os.environ.get("VISTUNE_MLFLOW_UI", "http://127.0.0.1:5000").rstrip("/")


def confusion_counts(predictions: Path) -> list[dict]:
    """Rows of the test confusion matrix (actual x predicted counts) from evaluate's predictions.csv."""
    if not predictions.is_file():
        return []
    import pandas as pd

    df = pd.read_csv(predictions, dtype=str)
    table = pd.crosstab(df["actual"], df["predicted"])
    labels = sorted(set(table.index) | set(table.columns))
    table = table.reindex(index=labels, columns=labels, fill_value=0)
    return [{"actual": a, **{f"pred {p}": int(table.loc[a, p]) for p in labels}} for a in labels]


def validation_rows(quality: dict) -> list[dict]:
    """The validation summary as rows: headline counts plus every quarantine reason that fired."""
    rows = [{"check": k, "value": quality[k]} for k in VALIDATION_KEYS if k in quality]
    rows += [{"check": k, "value": v} for k, v in sorted(quality.items())
             if k.startswith("quarantined_") and v]
    return rows


def md_table(rows: list[dict]) -> str:
    if not rows:
        return "_none_\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def mlflow_links(reg: dict) -> dict[str, str]:
    """MLflow UI links to the run and the model version named in registration.json."""
    links = {}
    if reg.get("run_id"):
        links["run"] = f"{mlflow_ui()}/#/experiments/{reg.get('experiment_id', '0')}/runs/{reg['run_id']}"
    if reg.get("version"):
        links["version"] = f"{mlflow_ui()}/#/models/{reg.get('model_name')}/versions/{reg['version']}"
    return links


def markdown(layout: Layout, experiment: str, metrics: dict, quality: dict, reg: dict, links: dict,
             validation: list[dict], confusion: list[dict], isolated: bool) -> str:
    rows = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
                     for k, v in sorted(metrics.items()) if not isinstance(v, (dict, list)))
    plots = (f"Plots: `dvc exp apply {experiment}` brings this run's outputs into the workspace, then "
             f"`dvc plots show`\n" if isolated else f"Plot: `{layout.confusion_png}` (`dvc plots show`)\n")
    return (
        f"## vistune run `{experiment}`\n\n| metric | value |\n|---|---|\n{rows}\n\n"
        f"**Data:** {quality.get('n_good', '?')} good images, {quality.get('n_quarantined', '?')} quarantined.\n\n"
        f"**Registry:** `{reg.get('model_name', '?')}` v{reg.get('version', '?')} — "
        f"{'promoted to champion' if reg.get('promoted') else 'kept as challenger'}: {reg.get('reason', '')}\n\n"
        f"**MLflow:** [run `{reg.get('run_id', '?')}`]({links.get('run', '')}) · "
        f"[model version {reg.get('version', '?')}]({links.get('version', '')}) (MLflow UI from `make up`; "
        f"store `{reg.get('tracking_uri', '?')}`)\n\n"
        f"**DVC experiment:** `{experiment}` (`dvc exp show`)\n\n"
        f"### Validation summary\n\n{md_table(validation)}\n"
        f"### Test confusion matrix (counts)\n\n{md_table(confusion)}\n" + plots
    )


@task
def publish_summary(repo: str, experiment: str, isolated: bool = False) -> dict:
    """Artifacts on the run: metrics, validation summary, confusion matrix, MLflow links.

    `isolated`: the run's outputs live only in its experiment (the workspace was not changed)."""
    layout = Layout(Path(repo))
    metrics, quality = read_json(layout.eval_metrics), read_json(layout.validation_summary)
    reg = read_json(layout.registration)
    confusion, validation, links = confusion_counts(layout.predictions), validation_rows(quality), mlflow_links(reg)
    md = markdown(layout, experiment, metrics, quality, reg, links, validation, confusion, isolated)
    create_markdown_artifact(markdown=md, key="vistune-run-summary", description="vistune pipeline summary")
    if validation:
        create_table_artifact(table=validation, key="vistune-validation", description="data validation summary")
    if confusion:
        create_table_artifact(table=confusion, key="vistune-confusion-matrix",
                              description="test confusion matrix: rows actual, columns predicted")
    if "run" in links:
        create_link_artifact(link=links["run"], link_text=f"MLflow run {reg['run_id']}", key="vistune-mlflow-run")
    if "version" in links:
        create_link_artifact(link=links["version"], link_text=f"{reg.get('model_name')} v{reg['version']}",
                             key="vistune-model-version")
    return {"metrics": metrics, "registration": reg, "links": links, "confusion": confusion}
