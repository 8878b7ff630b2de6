"""Stage `register`: one MLflow run per pipeline run, a registered model version, the gate.

Logs flattened params, per-epoch metrics, test metrics, the validation report and evaluation
plots; logs the pyfunc model, registers a version of `register.model_name`, makes it the
`challenger` and promotes it to `champion` only if it beats the current champion.
"""

from __future__ import annotations

import sys
import warnings
from typing import Sequence

import pandas as pd

from integrations import registry, tracking
from stages.cli import stage_main
from vistune.config import Params, to_dict
from vistune.errors import VistuneError
from vistune.io import read_json, write_json
from vistune.layout import Layout


def _example_image(layout: Layout) -> bytes:
    manifest = pd.read_csv(layout.manifest, dtype={"label": str})
    return (layout.raw / manifest[manifest.split == "test"].path.iloc[0]).read_bytes()


def run(params: Params, layout: Layout) -> dict:
    import mlflow

    cfg = params.register
    root = layout.root.resolve()
    for needed in (layout.model, layout.eval_metrics, layout.validation_summary):
        if not needed.is_file():
            raise VistuneError(f"{needed}: missing; run `dvc repro` so the earlier stages produce it")
    metrics = read_json(layout.eval_metrics)
    if cfg.gate_metric not in metrics:
        raise VistuneError(f"register.gate_metric {cfg.gate_metric!r} is not an evaluate metric; valid: {sorted(metrics)}")
    experiment_id = tracking.setup(cfg, root)
    client = mlflow.MlflowClient()
    summary = read_json(layout.validation_summary)
    manifest = pd.read_csv(layout.manifest, dtype={"label": str})
    classes = read_json(layout.prepared / "meta.json")["classes"]
    with mlflow.start_run(experiment_id=experiment_id) as active:
        mlflow.set_tags({
            "vistune.git_commit": tracking.git_commit(root),
            "vistune.git_dirty": str(tracking.git_dirty(root)).lower(),
            "vistune.data_source": params.data.source,
            **{f"vistune.dvc.{k}": v for k, v in tracking.dvc_stage_hashes(root).items()},
            **tracking.orchestration_tags(),
        })
        mlflow.log_params(tracking.flatten(to_dict(params)))
        with warnings.catch_warnings():  # schema-inference hints about integer columns are noise here
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(manifest, source=layout.manifest.resolve().as_uri(), name="image_manifest")
            # two runs logging the same dataset at once hit a UNIQUE constraint in MLflow's sqlite store
            with registry.registry_lock(tracking.lock_dir(cfg, root)):
                mlflow.log_input(dataset, context="training")
        tracking.log_metrics_history(pd.read_csv(layout.train_history))
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        mlflow.log_metrics({f"validate_{k}": float(v) for k, v in summary.items() if isinstance(v, (int, float))})
        tracking.log_artifacts([
            (layout.eval_dir, "evaluate"),  # metrics, report, calibration, robustness, every plot
            (layout.validated, "validate"),
            (layout.validation_docs, "validate/data_docs"), (layout.augment_preview, "augment"),
            (layout.train_history, "train"), (layout.train_metrics, "train"),
        ])
        info = tracking.log_model(layout.model, classes, _example_image(layout), registered_name=cfg.model_name,
                                  calibration=layout.calibration)
        run_id = active.info.run_id
    version = str(info.registered_model_version)
    for key, value in {"run_id": run_id, "git_commit": tracking.git_commit(root)}.items():
        client.set_model_version_tag(cfg.model_name, version, f"vistune.{key}", value)
    for k, v in tracking.dvc_stage_hashes(root).items():
        client.set_model_version_tag(cfg.model_name, version, f"vistune.dvc.{k}", v)
    for key, _, _ in registry.THRESHOLDS:  # the figures the gate judged, visible on the version
        if key in metrics:
            client.set_model_version_tag(cfg.model_name, version, f"vistune.{key}", repr(float(metrics[key])))
    decision = registry.gate(client, cfg.model_name, version, cfg.gate_metric, float(metrics[cfg.gate_metric]),
                             cfg.min_improvement, lock_dir=tracking.lock_dir(cfg, root),
                             failures=registry.threshold_failures(metrics, cfg))
    receipt = {"model_name": cfg.model_name, "run_id": run_id, "experiment_id": experiment_id,
               "tracking_uri": tracking.resolve_tracking_uri(cfg, root), **decision.as_dict()}
    write_json(layout.registration, receipt)
    verdict = "PROMOTED to champion" if decision.promoted else "kept as challenger"
    print(f"registered {cfg.model_name} v{version} (run {run_id}): {verdict}. {decision.reason}")
    return receipt


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("register", argv, run)


if __name__ == "__main__":
    sys.exit(main())
