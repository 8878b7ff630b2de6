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

from integrations import gate_report, lineage, registry, tracking
from stages.cli import stage_main
from vistune.config import Params, to_dict
from vistune.errors import VistuneError
from vistune.io import read_json, write_json
from vistune.layout import Layout
from vistune.evaluate.significance import GATE_TESTS


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
    if cfg.gate_test not in GATE_TESTS:
        raise VistuneError(f"params.yaml: register.gate_test {cfg.gate_test!r} is unknown; valid: {list(GATE_TESTS)}")
    dirty = lineage.check_clean(root, cfg.allow_dirty)  # refuses uncommitted source unless allowed
    experiment_id = tracking.setup(cfg, root)
    client = mlflow.MlflowClient()
    uri = tracking.resolve_tracking_uri(cfg, root)
    lock = tracking.lock_dir(cfg, root)
    commit, dvc_hashes = tracking.git_commit(root), tracking.dvc_stage_hashes(root)
    # idempotency: the same weights + params registered before (e.g. a re-run after the server came back)
    key_tags = tracking.idempotency_tags(layout.model, to_dict(params), metrics)
    existing = tracking.with_retries(cfg, uri, "search model versions",
                                     lambda: tracking.find_version(client, cfg.model_name, key_tags))
    if existing is not None:
        return _reuse(client, existing, params, layout, metrics, experiment_id, uri)
    summary = read_json(layout.validation_summary)
    manifest = pd.read_csv(layout.manifest, dtype={"label": str})
    classes = read_json(layout.prepared / "meta.json")["classes"]
    with mlflow.start_run(experiment_id=experiment_id) as active:
        mlflow.set_tags({
            "vistune.git_commit": commit,
            "vistune.git_dirty": str(tracking.git_dirty(root)).lower(),
            "vistune.data_source": params.data.source,
            **{f"vistune.dvc.{k}": v for k, v in dvc_hashes.items()},
            **tracking.orchestration_tags(),
        })
        mlflow.log_params(tracking.flatten(to_dict(params)))
        mlflow.log_dict(to_dict(params), "lineage/params.yaml")  # the resolved params, for `vistune lineage`
        with warnings.catch_warnings():  # schema-inference hints about integer columns are noise here
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(manifest, source=layout.manifest.resolve().as_uri(), name="image_manifest")
            # two runs logging the same dataset at once hit a UNIQUE constraint in MLflow's sqlite store
            with registry.registry_lock(lock):
                mlflow.log_input(dataset, context="training")
        tracking.log_metrics_history(pd.read_csv(layout.train_history))
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        mlflow.log_metrics({f"validate_{k}": float(v) for k, v in summary.items() if isinstance(v, (int, float))})
        tracking.log_artifacts([
            (layout.eval_dir, "evaluate"),  # metrics, report, calibration, robustness, every plot
            (layout.validated, "validate"),
            (layout.validation_docs, "validate/data_docs"), (layout.augment_preview, "augment"),
            (layout.train_history, "train"), (layout.train_metrics, "train"),
            (layout.compress_dir, "compress"),  # variant table + files, when compress.enabled
        ])
        info = tracking.log_model(layout.model, classes, _example_image(layout), registered_name=cfg.model_name,
                                  calibration=layout.calibration, version_tags=key_tags)
        run_id = active.info.run_id
    version = str(info.registered_model_version)
    for key, value in {"run_id": run_id, "git_commit": commit}.items():
        client.set_model_version_tag(cfg.model_name, version, f"vistune.{key}", value)
    for k, v in dvc_hashes.items():
        client.set_model_version_tag(cfg.model_name, version, f"vistune.dvc.{k}", v)
    for key, _, _ in registry.THRESHOLDS:  # the figures the gate judged, visible on the version
        if key in metrics:
            client.set_model_version_tag(cfg.model_name, version, f"vistune.{key}", repr(float(metrics[key])))
    for k, v in lineage.version_tags(to_dict(params), layout.manifest, root, dirty).items():
        client.set_model_version_tag(cfg.model_name, version, k, v)
    report = layout.registration.parent / "gate_report.md"
    gate_report.write(report, gate_report.placeholder(version, "no champion to compare with"), {})
    decision = registry.gate(client, cfg.model_name, version, cfg.gate_metric, float(metrics[cfg.gate_metric]),
                             cfg.min_improvement, lock_dir=lock,
                             failures=registry.threshold_failures(metrics, cfg),
                             compare=gate_report.make_compare(client, cfg, layout, version, run_id, report))
    receipt = {"model_name": cfg.model_name, "run_id": run_id, "experiment_id": experiment_id,
               "tracking_uri": uri, "reused": False,
               "gate_report": str(report.relative_to(layout.root)), **decision.as_dict()}
    write_json(layout.registration, receipt)
    verdict = "PROMOTED to champion" if decision.promoted else "kept as challenger"
    print(f"registered {cfg.model_name} v{version} (run {run_id}): {verdict}. {decision.reason}")
    return receipt


def _reuse(client, mv, params: Params, layout: Layout, metrics: dict, experiment_id: str, uri: str) -> dict:
    """Receipt for a version registered earlier from the same weights and params: no new run or
    version; the gate runs only if the earlier attempt died before it."""
    cfg = params.register
    version = str(mv.version)
    if mv.tags.get(f"{registry.TAG_PREFIX}gate"):
        tags = client.get_model_version(cfg.model_name, version).tags
        decision = registry.Decision(
            version, tags.get(f"{registry.TAG_PREFIX}gate") == "promoted", tags.get(f"{registry.TAG_PREFIX}decision_reason", ""),
            cfg.gate_metric, float(metrics[cfg.gate_metric]), tags.get(f"{registry.TAG_PREFIX}previous_champion"), None,
            [f for f in tags.get(f"{registry.TAG_PREFIX}gate_failures", "").split("; ") if f])
    else:
        decision = registry.gate(client, cfg.model_name, version, cfg.gate_metric, float(metrics[cfg.gate_metric]),
                                 cfg.min_improvement, lock_dir=tracking.lock_dir(cfg, layout.root.resolve()),
                                 failures=registry.threshold_failures(metrics, cfg))
    report = layout.registration.parent / "gate_report.md"
    if not report.is_file():  # a DVC out: must exist even when nothing new was gated here
        gate_report.write(report, gate_report.placeholder(version, "version reused; its run's gate/ artifacts hold "
                                                                   "the report of its first gate"), {})
    receipt = {"model_name": cfg.model_name, "run_id": mv.run_id, "experiment_id": experiment_id,
               "tracking_uri": uri, "reused": True, "gate_report": str(report.relative_to(layout.root)),
               **decision.as_dict()}
    write_json(layout.registration, receipt)
    print(f"{cfg.model_name} v{version} already holds these weights and params (run {mv.run_id}): "
          f"not registered again. {decision.reason}")
    return receipt


def _run_clearly(params: Params, layout: Layout) -> dict:
    """`run`, with a tracking server that vanished mid-way turned into one line (MLflow has retried)."""
    try:
        return run(params, layout)
    except Exception as exc:
        if isinstance(exc, VistuneError) or not tracking.is_unreachable(exc):
            raise
        uri = tracking.resolve_tracking_uri(params.register, layout.root.resolve())
        raise tracking.unreachable_error(uri, params.register, exc) from None


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("register", argv, _run_clearly)


if __name__ == "__main__":
    sys.exit(main())
