"""The run summary artifacts: metrics, validation table, confusion counts, MLflow links."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from flows.summary import confusion_counts, validation_rows


def _outputs(root: Path) -> Path:
    (root / "data/eval").mkdir(parents=True)
    (root / "data/validated").mkdir(parents=True)
    (root / "data/registry").mkdir(parents=True)
    (root / "data/eval/metrics.json").write_text(json.dumps({"test_accuracy": 0.75, "test_macro_f1": 0.7}))
    (root / "data/validated/summary.json").write_text(json.dumps(
        {"n_files": 10, "n_good": 9, "n_quarantined": 1, "quarantined_undecodable": 1, "quarantined_size": 0,
         "expectations_passed": True}))
    (root / "data/registry/registration.json").write_text(json.dumps(
        {"model_name": "vistune-classifier", "version": "3", "run_id": "abc123", "experiment_id": "7",
         "promoted": True, "reason": "beats champion", "tracking_uri": "sqlite:///x.db"}))
    pd.DataFrame({"actual": ["cat", "cat", "cat", "dog"], "predicted": ["cat", "dog", "cat", "dog"],
                  "confidence": [0.9, 0.6, 0.8, 0.7]}).to_csv(root / "data/eval/predictions.csv", index=False)
    return root


def test_confusion_counts_and_validation_rows(tmp_path: Path):
    root = _outputs(tmp_path)
    assert confusion_counts(root / "data/eval/predictions.csv") == [
        {"actual": "cat", "pred cat": 2, "pred dog": 1}, {"actual": "dog", "pred cat": 0, "pred dog": 1}]
    rows = {r["check"]: r["value"] for r in validation_rows(json.loads((root / "data/validated/summary.json").read_text()))}
    assert rows == {"n_files": 10, "n_good": 9, "n_quarantined": 1, "expectations_passed": True,
                    "quarantined_undecodable": 1}
    assert confusion_counts(root / "missing.csv") == []


def test_publish_summary_creates_artifacts_with_mlflow_links(tmp_path: Path, harness, monkeypatch):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.summary import publish_summary

    monkeypatch.setenv("VISTUNE_MLFLOW_UI", "http://mlflow.test:5000/")
    root = _outputs(tmp_path)

    @flow(name="summary-only")
    def summary_only() -> dict:
        return publish_summary(str(root), "exp-1")

    state = summary_only(return_state=True)
    result = state.result()
    assert result["links"] == {"run": "http://mlflow.test:5000/#/experiments/7/runs/abc123",
                               "version": "http://mlflow.test:5000/#/models/vistune-classifier/versions/3"}
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    by_key = {a.key: a for a in arts}
    assert set(by_key) == {"vistune-run-summary", "vistune-validation", "vistune-confusion-matrix",
                           "vistune-mlflow-run", "vistune-model-version"}
    md = by_key["vistune-run-summary"].data
    assert "| test_accuracy | 0.7500 |" in md and "(http://mlflow.test:5000/#/experiments/7/runs/abc123)" in md
    assert "| cat | 2 | 1 |" in md
    assert "http://mlflow.test:5000/#/models/vistune-classifier/versions/3" in by_key["vistune-model-version"].data
    assert json.loads(by_key["vistune-confusion-matrix"].data)[0] == {"actual": "cat", "pred cat": 2, "pred dog": 1}
