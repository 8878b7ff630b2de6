"""The run report a `train-pipeline` flow run leaves in the Prefect UI: a headline table (accuracy,
macro-F1, ECE, robustness, latency, size and the gate decision, each with its delta against the
champion the run was gated against), a markdown summary (headline, data, registry decision, DVC
experiment), the confusion matrix and reliability diagram as images, table artifacts (validation
summary, test confusion counts) and described links to the MLflow run and model version.

`publish_summary` is called in the flow's own body, not as a task, so the artifacts belong to the
flow run and show on its Artifacts tab. Images are PNG data URIs: the Prefect UI shows them without
any other server running. Every file is found through `vistune.layout.Layout`.
"""

from __future__ import annotations

import os
from pathlib import Path

from prefect import get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from app.report import HEADLINE, LOWER_IS_BETTER, RUN_IMAGES, data_uri, read_json
from integrations import tags as T
from vistune.layout import Layout

VALIDATION_KEYS = (
    "n_files",
    "n_good",
    "n_quarantined",
    "n_train",
    "n_val",
    "n_test",
    "n_classes",
    "imbalance_ratio",
    "bad_fraction",
    "n_exact_duplicates",
    "n_near_duplicates",
    "n_leaked",
    "n_leaked_lookalike",
    "n_warnings",
    "expectations_passed",
)


P50, P95 = "test_latency_p50_ms", "test_latency_p95_ms"


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
    rows += [{"check": k, "value": v} for k, v in sorted(quality.items()) if k.startswith("quarantined_") and v]
    return rows


def champion_metrics(reg: dict) -> dict:
    """Metrics of the champion this run was gated against ({} when there was none or MLflow cannot
    be read: the report never fails the run)."""
    if not reg.get("champion_before") or reg.get("champion_before") == reg.get("version"):
        return {}
    try:
        from integrations.tracking import version_metrics

        return version_metrics(reg["tracking_uri"], reg["model_name"], str(reg["champion_before"]))
    except Exception as exc:  # a store that moved or a server that is down: report without deltas
        get_run_logger().warning(
            "champion v%s metrics not readable (%s); report without deltas",
            reg.get("champion_before"),
            str(exc).splitlines()[0][:200] if str(exc) else exc,
        )
        return {}


def latency_band(metrics: dict, champion: dict) -> float | None:
    """The noise of a p50 latency difference: the larger of the two runs' p95 - p50 spread of single-image
    times (each run times `evaluate.latency_runs` calls on a machine whose load varies). None: unknown."""
    spreads = [float(m[P95]) - float(m[P50]) for m in (metrics, champion) if P95 in m and P50 in m]
    return max(max(spreads), 0.0) if spreads else None


def _delta(value: float, before: float, fmt: str, better: str, band: float | None = 0.0) -> str:
    """Signed difference, labelled better/worse only beyond `band` (None: no stated band, no label)."""
    diff = value - before
    if diff == 0:
        return "±0"
    signed = fmt.format(diff) if diff < 0 else "+" + fmt.format(diff)
    if band is None:
        return f"{signed} (no noise band)"
    if abs(diff) <= band:
        return f"{signed} (within noise ±{fmt.format(band)})"
    good = (diff > 0) == (better == "higher")
    return f"{signed} ({'better' if good else 'worse'})"


def gate_row(reg: dict) -> dict:
    """The gate decision as a headline row: promoted or not, and the test's verdict with its p-value."""
    champ = reg.get("champion_before")
    decision = T.gate_outcome(reg.get("promoted"), reg.get("pending_approval"))
    if not reg:
        decision = "not registered"
    test = reg.get("verdict") or ("thresholds failed" if reg.get("failures") else "no test")
    p = reg.get("p_value")
    return {
        "metric": "gate decision",
        "this run": decision,
        "champion": f"v{champ}" if champ else "none",
        "delta": f"{test}, p={p:.4g}" if p is not None else test,
    }


def headline_rows(metrics: dict, champion: dict, reg: dict) -> list[dict]:
    """At most 7 rows a reader needs first: value, the champion's value, and the delta (better/worse)."""
    rows = []
    for label, key, fmt in HEADLINE:
        if key not in metrics:
            continue
        value, before = float(metrics[key]), champion.get(key)
        better = "lower" if key in LOWER_IS_BETTER else "higher"
        band = latency_band(metrics, champion) if key == P50 else 0.0
        rows.append(
            {
                "metric": label,
                "this run": fmt.format(value),
                "champion": fmt.format(before) if before is not None else "-",
                "delta": _delta(value, float(before), fmt, better, band) if before is not None else "-",
            }
        )
    return rows + [gate_row(reg)]


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
    if reg.get("card") and "run" in links:  # the model card, in the run's artifact browser
        artifact = reg["card"].removeprefix(f"runs:/{reg['run_id']}/")
        links["card"] = f"{links['run']}/artifacts/{artifact}"
    return links


def markdown(
    layout: Layout, experiment: str, headline: list[dict], quality: dict, reg: dict, links: dict, isolated: bool
) -> str:
    plots = (
        f"Plots: `dvc exp apply {experiment}` brings this run's outputs into the workspace, then `dvc plots show`\n"
        if isolated
        else f"Plots: `{layout.eval_dir}` (`dvc plots show`)\n"
    )
    champ = f" (deltas against champion v{reg['champion_before']})" if reg.get("champion_before") else ""
    verdict = T.gate_outcome(reg.get("promoted"), reg.get("pending_approval"))
    card = (
        f"**Model card:** [{reg['card']}]({links['card']}) (`vistune card {reg.get('version')}` writes it locally)\n\n"
        if "card" in links
        else ""
    )
    return (
        f"## vistune run `{experiment}`\n\n### Headline{champ}\n\n{md_table(headline)}\n"
        f"**Data:** {quality.get('n_good', '?')} good images, {quality.get('n_quarantined', '?')} quarantined "
        f"(artifact `vistune-validation`).\n\n"
        f"**Registry:** `{reg.get('model_name', '?')}` v{reg.get('version', '?')} — "
        f"{verdict}: {reg.get('reason', '')}\n\n{card}"
        f"**MLflow:** [run `{reg.get('run_id', '?')}`]({links.get('run', '')}) · "
        f"[model version {reg.get('version', '?')}]({links.get('version', '')}) (MLflow UI from `make up`; "
        f"store `{reg.get('tracking_uri', '?')}`)\n\n"
        f"**DVC experiment:** `{experiment}` (`dvc exp show`)\n\n"
        f"All test metrics: `data/eval/metrics.json` (`vistune metrics`, `dvc metrics show`). " + plots
    )


def publish_summary(repo: str, experiment: str, isolated: bool = False) -> dict:
    """Artifacts on the flow run (call it from the flow body): headline, summary, images, validation
    summary, confusion counts, MLflow links.

    `isolated`: the run's outputs live only in its experiment (the workspace was not changed)."""
    layout = Layout(Path(repo))
    metrics, quality = read_json(layout.eval_metrics), read_json(layout.validation_summary)
    reg = read_json(layout.registration)
    headline = headline_rows(metrics, champion_metrics(reg), reg)
    confusion, validation, links = confusion_counts(layout.predictions), validation_rows(quality), mlflow_links(reg)
    create_table_artifact(
        table=headline, key="vistune-headline", description="headline: this run vs the champion it was gated against"
    )
    create_markdown_artifact(
        markdown=markdown(layout, experiment, headline, quality, reg, links, isolated),
        key="vistune-run-summary",
        description="vistune run summary",
    )
    for key, attr, description in RUN_IMAGES:
        if uri := data_uri(getattr(layout, attr)):
            # a markdown image: the UI's image artifact prints its whole data: URL under the picture
            create_markdown_artifact(markdown=f"![{description}]({uri})", key=key, description=description)
    if validation:
        create_table_artifact(table=validation, key="vistune-validation", description="data validation summary")
    if confusion:
        create_table_artifact(
            table=confusion,
            key="vistune-confusion-matrix",
            description="test confusion matrix (counts): rows actual, columns predicted",
        )
    if "run" in links:
        create_link_artifact(
            link=links["run"],
            link_text=f"MLflow run {reg['run_id']}",
            key="vistune-mlflow-run",
            description="the MLflow run: params, per-epoch metrics, plots, gate report, model",
        )
    if "version" in links:
        create_link_artifact(
            link=links["version"],
            link_text=f"{reg.get('model_name')} v{reg['version']}",
            key="vistune-model-version",
            description="the registered model version: aliases, tags, lineage",
        )
    return {"metrics": metrics, "registration": reg, "links": links, "confusion": confusion, "headline": headline}
