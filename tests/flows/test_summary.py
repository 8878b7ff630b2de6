"""The run summary artifacts: metrics, validation table, confusion counts, MLflow links."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pandas as pd

from flows.summary import confusion_counts, validation_rows


def _outputs(root: Path) -> Path:
    (root / "data/eval").mkdir(parents=True)
    (root / "data/validated").mkdir(parents=True)
    (root / "data/registry").mkdir(parents=True)
    (root / "data/eval/metrics.json").write_text(json.dumps({"test_accuracy": 0.75, "test_macro_f1": 0.7}))
    (root / "data/validated/summary.json").write_text(
        json.dumps(
            {
                "n_files": 10,
                "n_good": 9,
                "n_quarantined": 1,
                "quarantined_undecodable": 1,
                "quarantined_size": 0,
                "expectations_passed": True,
            }
        )
    )
    (root / "data/registry/registration.json").write_text(
        json.dumps(
            {
                "model_name": "vistune-classifier",
                "version": "3",
                "run_id": "abc123",
                "experiment_id": "7",
                "promoted": True,
                "reason": "beats champion",
                "tracking_uri": "sqlite:///x.db",
            }
        )
    )
    pd.DataFrame(
        {
            "actual": ["cat", "cat", "cat", "dog"],
            "predicted": ["cat", "dog", "cat", "dog"],
            "confidence": [0.9, 0.6, 0.8, 0.7],
        }
    ).to_csv(root / "data/eval/predictions.csv", index=False)
    return root


def test_confusion_counts_and_validation_rows(tmp_path: Path):
    root = _outputs(tmp_path)
    assert confusion_counts(root / "data/eval/predictions.csv") == [
        {"actual": "cat", "pred cat": 2, "pred dog": 1},
        {"actual": "dog", "pred cat": 0, "pred dog": 1},
    ]
    rows = {
        r["check"]: r["value"] for r in validation_rows(json.loads((root / "data/validated/summary.json").read_text()))
    }
    assert rows == {
        "n_files": 10,
        "n_good": 9,
        "n_quarantined": 1,
        "expectations_passed": True,
        "quarantined_undecodable": 1,
    }
    assert confusion_counts(root / "missing.csv") == []


def _champion_store(tmp_path: Path) -> tuple[str, str]:
    """A real sqlite MLflow store with v1 of vistune-classifier, whose run logged champion metrics."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("vistune", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(exp)
    for key, value in {"test_accuracy": 0.8, "test_macro_f1": 0.6, "test_ece": 0.05}.items():
        client.log_metric(run.info.run_id, key, value)
    client.create_registered_model("vistune-classifier")
    client.create_model_version("vistune-classifier", (tmp_path / "artifacts").as_uri(), run_id=run.info.run_id)
    return uri, exp


def test_publish_summary_puts_headline_images_and_links_on_the_flow_run(tmp_path: Path, harness, monkeypatch):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.summary import publish_summary

    monkeypatch.setenv("VISTUNE_MLFLOW_UI", "http://mlflow.test:5000/")
    root = _outputs(tmp_path)
    uri, _ = _champion_store(tmp_path)
    reg = json.loads((root / "data/registry/registration.json").read_text())
    reg |= {
        "tracking_uri": uri,
        "champion_before": "1",
        "verdict": "no significant difference",
        "p_value": 0.25,
        "promoted": False,
    }
    (root / "data/registry/registration.json").write_text(json.dumps(reg))
    png = root / "data/eval/confusion_matrix.png"
    from PIL import Image

    Image.new("RGB", (7, 5), (200, 10, 10)).save(png)

    @flow(name="summary-only")
    def summary_only() -> dict:
        return publish_summary(str(root), "exp-1")

    state = summary_only(return_state=True)
    result = state.result()
    assert result["links"] == {
        "run": "http://mlflow.test:5000/#/experiments/7/runs/abc123",
        "version": "http://mlflow.test:5000/#/models/vistune-classifier/versions/3",
    }
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        )
    by_key = {a.key: a for a in arts}
    assert set(by_key) == {
        "vistune-headline",
        "vistune-run-summary",
        "vistune-confusion-matrix-plot",
        "vistune-validation",
        "vistune-confusion-matrix",
        "vistune-mlflow-run",
        "vistune-model-version",
    }
    assert all(a.task_run_id is None for a in arts)  # the flow run's own artifacts, not a task's
    headline = {r["metric"]: r for r in json.loads(by_key["vistune-headline"].data)}
    assert len(headline) <= 10
    assert headline["accuracy"] == {
        "metric": "accuracy",
        "this run": "0.7500",
        "champion": "0.8000",
        "delta": "-0.0500 (worse)",
    }  # the champion's own MLflow run metrics
    assert headline["macro-F1"]["delta"] == "+0.1000 (better)"
    assert headline["gate decision"] == {
        "metric": "gate decision",
        "this run": "kept as challenger",
        "champion": "v1",
        "delta": "no significant difference, p=0.25",
    }
    image = by_key["vistune-confusion-matrix-plot"]
    # a markdown image: the UI shows the picture without printing its data: URL under it
    assert image.type == "markdown" and image.data.startswith(
        "![test confusion matrix (rows actual, columns predicted)](data:image/png;base64,"
    )
    assert base64.b64decode(image.data.split("base64,", 1)[1].removesuffix(")")) == png.read_bytes()
    md = by_key["vistune-run-summary"].data
    assert "| accuracy | 0.7500 | 0.8000 | -0.0500 (worse) |" in md
    assert "(http://mlflow.test:5000/#/experiments/7/runs/abc123)" in md
    assert "http://mlflow.test:5000/#/models/vistune-classifier/versions/3" in by_key["vistune-model-version"].data
    assert by_key["vistune-model-version"].description and by_key["vistune-mlflow-run"].description
    assert json.loads(by_key["vistune-confusion-matrix"].data)[0] == {"actual": "cat", "pred cat": 2, "pred dog": 1}


def test_latency_delta_is_labelled_only_beyond_the_noise_band():
    """The p50 difference is better/worse only when it exceeds the larger p95 - p50 spread of the two runs."""
    from flows.summary import headline_rows

    champion = {"test_latency_p50_ms": 3.0, "test_latency_p95_ms": 4.0}

    def latency(metrics: dict) -> str:
        return {r["metric"]: r for r in headline_rows(metrics, champion, {})}["latency p50 (ms / image)"]["delta"]

    assert latency({"test_latency_p50_ms": 12.21, "test_latency_p95_ms": 15.0}) == "+9.21 (worse)"  # 9.21 > 2.79
    assert latency({"test_latency_p50_ms": 12.21, "test_latency_p95_ms": 25.0}) == "+9.21 (within noise ±12.79)"
    assert latency({"test_latency_p50_ms": 2.5, "test_latency_p95_ms": 2.9}) == "-0.50 (within noise ±1.00)"
    assert latency({"test_latency_p50_ms": 1.5, "test_latency_p95_ms": 1.9}) == "-1.50 (better)"
    assert latency({"test_latency_p50_ms": 2.5}) == "-0.50 (within noise ±1.00)"  # the champion's band alone
