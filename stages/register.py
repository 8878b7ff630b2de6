"""Stage `register`: one MLflow run per pipeline run, a registered model version, the gate.

Logs flattened params, per-epoch metrics, test metrics, the validation report and evaluation
plots; logs the pyfunc model, registers a version of `register.model_name`, makes it the
`challenger` and promotes it to `champion` only if it beats the current champion. Each compress
variant that passed its own gate (data/compress/report.csv) becomes a sibling version tagged
`vistune.variant` / `vistune.variant_of`, with no alias (`vistune serve --version V` serves it). Every MLflow
call goes through `integrations.tracking.Tracker` (opened once here); the run is named after the
DVC experiment / Prefect flow run, and its lineage tags are set last, once this stage's own
outputs are written, so they carry those files' hashes.
"""

from __future__ import annotations

import sys
from typing import Sequence

import pandas as pd

from app import card, gate_report
from flows import cross_host_lock
from integrations import champion, lineage, registry, tags as T, tracking
from stages.cli import stage_main
from vistune.config import Params, RegisterCfg, to_dict
from vistune.errors import VistuneError
from vistune.io import read_json, write_json
from vistune.layout import Layout


def _example_image(manifest: pd.DataFrame, layout: Layout) -> bytes:
    return (layout.raw / manifest[manifest.split == "test"].path.iloc[0]).read_bytes()


def _gate_report(layout: Layout):
    return layout.registration.parent / "gate_report.md"


def _record(params: Params, layout: Layout, metrics: dict, key_tags: dict[str, str]) -> tracking.RunRecord:
    """What this run logs: the files of the earlier stages, read once."""
    summary = read_json(layout.validation_summary)
    manifest = pd.read_csv(layout.manifest, dtype={"label": str})
    logged = {k: float(v) for k, v in metrics.items()}
    logged |= {f"validate_{k}": float(v) for k, v in summary.items() if isinstance(v, (int, float))}
    return tracking.RunRecord(
        name=lineage.run_name(),
        params=to_dict(params),
        metrics=logged,
        history=pd.read_csv(layout.train_history),
        manifest=manifest,
        manifest_uri=layout.manifest.resolve().as_uri(),
        artifacts=[
            (layout.eval_dir, "evaluate"),  # metrics, report, calibration, robustness, every plot
            (layout.validated, "validate"),
            (layout.validation_docs, "validate/data_docs"),
            (layout.augment_preview, "augment"),
            (layout.train_history, "train"),
            (layout.train_metrics, "train"),
            (layout.compress_dir, "compress"),  # variant table + files, when compress.enabled
        ],
        model_file=layout.model,
        classes=read_json(layout.prepared / "meta.json")["classes"],
        example_image=_example_image(manifest, layout),
        calibration=layout.calibration,
        version_tags={k: v for k, v in key_tags.items() if k in tracking.VERSION_IDENTITY},
        run_tags={k: v for k, v in key_tags.items() if k not in tracking.VERSION_IDENTITY},
    )


def _passed_variants(layout: Layout) -> list[dict]:
    """compress's variants that passed their gate (report.csv `gate` == pass) and whose file exists."""
    if not layout.compress_report.is_file():
        return []
    table = pd.read_csv(layout.compress_report, keep_default_na=False)
    if "gate" not in table.columns:
        return []
    return [
        row
        for row in table.to_dict("records")
        if row["gate"] == "pass" and row["file"] and (layout.compress_dir / row["file"]).is_file()
    ]


def _register_variants(tracker: tracking.Tracker, layout: Layout, run_id: str, parent: str) -> dict[str, str]:
    """Each passing variant as its own version (tags vistune.variant / vistune.variant_of, no alias);
    variants registered from this parent before are not registered again. Returns {variant: version}."""
    done = tracker.variant_versions(parent)
    rows = [r for r in _passed_variants(layout) if r["variant"] not in done]
    if rows:
        classes = read_json(layout.prepared / "meta.json")["classes"]
        example = _example_image(pd.read_csv(layout.manifest, dtype={"label": str}), layout)
    for row in rows:
        same_function = str(row["variant"]).startswith("onnx")  # exported/quantized: the parent's temperature holds
        figures = {
            T.metric(f"variant_{k}"): repr(float(row[k]))
            for k in ("accuracy", "size_mb", "gzip_mb", "p50_ms", "p50_b32_ms", "images_per_s")
        }
        done[row["variant"]] = tracker.log_variant(
            run_id,
            parent,
            row["variant"],
            layout.compress_dir / row["file"],
            classes,
            example,
            layout.calibration if same_function else None,
            figures,
        )
        print(f"registered variant {row['variant']} of v{parent} as v{done[row['variant']]} (no alias)")
    if rows:
        tracker.tag(None, parent, {T.VARIANTS: ", ".join(f"{k}=v{v}" for k, v in sorted(done.items()))})
    return done


def _check_inputs(params: Params, layout: Layout) -> dict:
    for needed in (layout.model, layout.eval_metrics, layout.validation_summary):
        if not needed.is_file():
            raise VistuneError(f"{needed}: missing; run `dvc repro` so the earlier stages produce it")
    metrics = read_json(layout.eval_metrics)
    gate_metric = params.register.gate_metric
    if gate_metric not in metrics:
        raise VistuneError(f"register.gate_metric {gate_metric!r} is not an evaluate metric; valid: {sorted(metrics)}")
    return metrics


def _gate(tracker: tracking.Tracker, cfg: RegisterCfg, version: str, metrics: dict, compare=None) -> registry.Decision:
    """`registry.gate` with this stage's register params: a new version (with its paired comparison) and a
    re-run that finds a version whose gate never ran both come here."""
    return registry.gate(
        tracker.client,
        cfg.model_name,
        version,
        cfg.gate_metric,
        float(metrics[cfg.gate_metric]),
        cfg.min_improvement,
        lock_dir=tracker.lock,
        failures=registry.threshold_failures(metrics, cfg),
        compare=compare,
        approval_required=cfg.approval == "required",
    )


def run(params: Params, layout: Layout) -> dict:
    cfg = params.register
    root = layout.root.resolve()
    metrics = _check_inputs(params, layout)
    dirty = lineage.check_clean(root, cfg.allow_dirty)  # refuses uncommitted source unless allowed
    tracker = tracking.Tracker.open(cfg, root, shared=cross_host_lock.hold)  # + the lock all hosts see
    # idempotency: the same weights + params registered before (e.g. a re-run after the server came back)
    key_tags = tracking.idempotency_tags(layout.model, to_dict(params), metrics)
    existing = tracker.version_with_tags(key_tags)
    if existing is not None:
        return _reuse(tracker, existing, params, layout, metrics, dirty)
    run_id, version = tracker.log_run(_record(params, layout, metrics, key_tags))
    report = _gate_report(layout)
    gate_report.write(report, gate_report.placeholder(version, "no champion to compare with"), {})
    decision = _gate(
        tracker, cfg, version, metrics, gate_report.make_compare(tracker.client, cfg, layout, version, run_id, report)
    )
    variants = _register_variants(tracker, layout, run_id, version)
    receipt = _write_receipt(tracker, layout, run_id, False, decision, variants)
    facts = lineage.facts(to_dict(params), layout.manifest, root, dirty)
    tracker.tag_lineage(run_id, version, facts, lineage.version_tags(facts))
    _log_card(tracker, layout, params, receipt)
    verdict = T.gate_outcome(decision.promoted, decision.pending_approval)
    print(f"registered {cfg.model_name} v{version} (run {run_id}): {verdict}. {decision.reason}")
    return receipt


def _write_receipt(
    tracker: tracking.Tracker,
    layout: Layout,
    run_id: str,
    reused: bool,
    decision: registry.Decision,
    variants: dict[str, str],
) -> dict:
    receipt = {
        "model_name": tracker.model_name,
        "run_id": run_id,
        "experiment_id": tracker.experiment_id,
        "tracking_uri": tracker.uri,
        "reused": reused,
        "gate_report": str(_gate_report(layout).relative_to(layout.root)),
        "card": card.card_uri(run_id),
        "approval_timeout_h": tracker.cfg.approval_timeout_h,
        **decision.as_dict(),
        "variants": variants,
    }
    write_json(layout.registration, receipt)
    drift = read_json(layout.drift) if layout.drift.is_file() else None
    write_json(layout.register_drift, champion.drift_check(drift, decision.champion_before))
    return receipt


def _log_card(tracker: tracking.Tracker, layout: Layout, params: Params, receipt: dict) -> None:
    """The version's model card (app/card.py): an artifact of its run, linked from the version."""
    html = card.build(layout, to_dict(params), receipt, layout.root.resolve())
    tracker.log_card(receipt["run_id"], receipt["version"], html, receipt["card"])


def _earlier_decision(tracker: tracking.Tracker, version: str, metrics: dict) -> registry.Decision:
    cfg = tracker.cfg
    tags = registry.version_facts(tracker.client, cfg.model_name, version)
    return registry.Decision(
        version,
        tags.get(T.GATE) == "promoted",
        tags.get(T.DECISION_REASON, ""),
        cfg.gate_metric,
        float(metrics[cfg.gate_metric]),
        tags.get(T.PREVIOUS_CHAMPION),
        None,
        [f for f in tags.get(T.GATE_FAILURES, "").split("; ") if f],
        significance=tags.get(T.GATE_SIGNIFICANCE),
        pending_approval=tags.get(T.APPROVAL) == "pending",
    )


def _reuse(tracker: tracking.Tracker, mv, params: Params, layout: Layout, metrics: dict, dirty: list[str]) -> dict:
    """Receipt for a version registered earlier from the same weights and params: no new run or
    version; the gate, and the lineage tags, run only if the earlier attempt died before them."""
    cfg = params.register
    version = str(mv.version)
    if mv.tags.get(T.GATE):
        decision = _earlier_decision(tracker, version, metrics)
    else:
        decision = _gate(tracker, cfg, version, metrics)
    report = _gate_report(layout)
    if not report.is_file():  # a DVC out: must exist even when nothing new was gated here
        gate_report.write(
            report,
            gate_report.placeholder(
                version, "version reused; its run's gate/ artifacts hold the report of its first gate"
            ),
            {},
        )
    variants = _register_variants(tracker, layout, mv.run_id, version)
    receipt = _write_receipt(tracker, layout, mv.run_id, True, decision, variants)
    if T.lineage("git_commit") not in mv.tags:
        facts = lineage.facts(to_dict(params), layout.manifest, layout.root.resolve(), dirty)
        tracker.tag_lineage(mv.run_id, version, facts, lineage.version_tags(facts))
    if T.CARD not in mv.tags:
        _log_card(tracker, layout, params, receipt)
    print(
        f"{cfg.model_name} v{version} already holds these weights and params (run {mv.run_id}): "
        f"not registered again. {decision.reason}"
    )
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
