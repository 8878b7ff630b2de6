"""The model card: one self-contained HTML page per registered version, built from the run's own outputs.

What the model is for (backbone, classes, data source and size), headline metrics with bootstrap CIs
(resampled from evaluate's per-image `predictions.csv`), per-class precision/recall/F1, the confusion
matrix, reliability diagram (before/after temperature scaling), robustness table, Grad-CAM grid, the
data-quality summary (quarantine counts by reason), drift against the champion when `validate`/`score`
wrote one, lineage (git SHA, dvc.lock hashes, Prefect run, DVC experiment) and the gate decision
against the champion it was compared with. Images are inlined as base64 data URIs and the page loads
nothing from the network, so it opens from a mail attachment or an air-gapped share.

`register` renders it after the gate and logs it as the run artifact `card/model_card.html`
(`CARD_ARTIFACT`); `vistune card VERSION` downloads it. The HTML itself is in `card_template.py`.
"""

from __future__ import annotations

from datetime import datetime, UTC
from pathlib import Path

import pandas as pd

from app import card_template
from app.report import CARD_HEADLINE, IMAGES, data_uri, read_json as _json
from integrations import dvcfiles, lineage
from integrations.tags import CARD_ARTIFACT
from vistune.evaluate.significance import bootstrap_ci
from vistune.layout import Layout

# validate's drift report against the champion (Layout.drift); the section is left out when absent
DRIFT_FILES = ("validated/drift.json",)
SHOWN_IF = {"label_issue_sheet": "n_label_issues", "lookalike_sheet": "n_leaked_lookalike"}  # validate's pictures


def _shown(attr: str, summary: dict) -> bool:
    """validate's suspect pictures appear only when it flagged some: no placeholder picture in the card."""
    key = SHOWN_IF.get(attr)
    return key is None or bool(summary.get(key))


N_BOOT, CONFIDENCE, SEED = 1000, 0.95, 0


def card_uri(run_id: str) -> str:
    return f"runs:/{run_id}/{CARD_ARTIFACT}"


def headline(layout: Layout, metrics: dict, classes: list[str]) -> list[dict]:
    """Headline rows; accuracy and macro-F1 carry a bootstrap CI from the per-image predictions."""
    y = pred = None
    if layout.predictions.is_file() and classes:
        df = pd.read_csv(layout.predictions, dtype=str)
        index = {c: i for i, c in enumerate(classes)}
        y, pred = df["actual"].map(index).to_numpy(), df["predicted"].map(index).to_numpy()
    rows = []
    for key, label, boot in CARD_HEADLINE:
        if key not in metrics:
            continue
        row = {"key": key, "label": label, "value": float(metrics[key]), "low": None, "high": None}
        if boot and y is not None:
            _, row["low"], row["high"] = bootstrap_ci(y, pred, boot, len(classes), N_BOOT, CONFIDENCE, SEED)
        rows.append(row)
    return rows


def quality(summary: dict) -> dict:
    """Data-quality counts: the headline numbers and every quarantine reason that fired."""
    keys = (
        "n_files",
        "n_good",
        "n_quarantined",
        "n_train",
        "n_val",
        "n_test",
        "n_leaked",
        "n_leaked_lookalike",
        "n_exact_duplicates",
        "n_near_duplicates",
        "imbalance_ratio",
    )
    reasons = {
        k.removeprefix("quarantined_"): v for k, v in sorted(summary.items()) if k.startswith("quarantined_") and v
    }
    return {"counts": {k: summary[k] for k in keys if k in summary}, "reasons": reasons}


def drift(layout: Layout, gate_champion: str | None = None) -> dict | None:
    """Scalars of validate's drift report, None when there is none; marked stale (first row) when it
    was not measured against the champion the gate compared with (`integrations.champion`)."""
    from integrations.champion import drift_staleness

    for rel in DRIFT_FILES:
        found = _json(layout.data / rel)
        if found:
            scalars = {k: v for k, v in found.items() if isinstance(v, (int, float, str, bool))}
            stale = drift_staleness(scalars, gate_champion)
            return {"stale": stale, **scalars} if stale else scalars
    return None


def lineage_rows(root: Path) -> dict:
    """Git, DVC and Prefect facts of this run, read from their sources (not from tags, whose shape
    may change): the card shows the same values `vistune lineage` prints."""
    ctx = lineage.run_context()
    hashes = [
        {"stage": s, "path": p, "md5": md5}
        for (s, p), md5 in sorted(dvcfiles.out_hashes(root, written_by="register").items())
    ]
    return {
        "git_commit": lineage.git_commit(root),
        "git_dirty": lineage.dirty_files(root),
        "dvc_experiment": ctx["dvc_experiment"],
        "prefect_flow_run_id": ctx["prefect_flow_run_id"],
        "prefect_flow_run_name": ctx["prefect_flow_run_name"],
        "prefect_flow_run_url": lineage.prefect_url(ctx["prefect_flow_run_id"]),
        "dvc_hashes": hashes,
    }


def variants(layout: Layout, registered: dict) -> list[dict]:
    """The compress report's rows (when the optional stage ran), each with the model version it was
    registered as (`registered`: variant -> version, from register's receipt) or why it was not."""
    if not layout.compress_report.is_file():
        return []
    table = pd.read_csv(layout.compress_report)
    cols = ["variant", "accuracy", "size_mb", "p50_ms", "p50_b32_ms", "images_per_s", "gate", "gate_reason"]
    rows = table[[c for c in cols if c in table.columns]].fillna("").to_dict("records")
    return [dict(r, version=registered.get(str(r["variant"]), "")) for r in rows]


def context(layout: Layout, params: dict, receipt: dict, root: Path) -> dict:
    """Everything the template shows, read from the run's files once."""
    metrics, summary = _json(layout.eval_metrics), _json(layout.validation_summary)
    meta = _json(layout.prepared / "meta.json") or _json(layout.ingest_report)
    classes = [str(c) for c in meta.get("classes", [])]
    report = pd.read_csv(layout.class_report, dtype={"class": str}) if layout.class_report.is_file() else None
    robust = pd.read_csv(layout.robustness_csv) if layout.robustness_csv.is_file() else None
    gate_md = layout.registration.parent / "gate_report.md"
    return {
        "receipt": receipt,
        "params": params,
        "classes": classes,
        "metrics": metrics,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "headline": headline(layout, metrics, classes),
        "confidence": CONFIDENCE,
        "n_boot": N_BOOT,
        "per_class": report.to_dict("records") if report is not None else [],
        "robustness": robust.to_dict("records") if robust is not None and len(robust) else [],
        "images": [
            (title, uri) for attr, title in IMAGES if _shown(attr, summary) and (uri := data_uri(getattr(layout, attr)))
        ],  # no suspects: no placeholder picture
        "quality": quality(summary),
        "drift": drift(layout, receipt.get("champion_before")),
        "lineage": lineage_rows(root),
        "gate_report": gate_md.read_text() if gate_md.is_file() else "",
        "calibration": _json(layout.calibration),
        "variants": variants(layout, receipt.get("variants") or {}),
    }


def build(layout: Layout, params: dict, receipt: dict, root: Path) -> str:
    """The card's HTML for the version in `receipt` (register's registration.json content)."""
    return card_template.render(context(layout, params, receipt, root))


def fetch(client, name: str, version: str, out: Path) -> Path:
    """Download version `version`'s card (`vistune card`) to `out`, atomically."""
    import shutil
    import tempfile

    from vistune.io import atomic_path

    mv = client.get_model_version(name, version)
    if not mv.run_id:
        raise ValueError(f"v{version} of {name!r} has no MLflow run, so no model card")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            got = Path(client.download_artifacts(mv.run_id, CARD_ARTIFACT, tmp))
        except Exception as exc:
            if "No such file" in str(exc) or "not found" in str(exc).lower() or isinstance(exc, OSError):
                raise ValueError(
                    f"v{version} of {name!r} has no model card (registered before cards existed); "
                    f"re-run `dvc repro register` to register a carded version"
                ) from None
            raise
        with atomic_path(out) as tmp_out:
            shutil.copyfile(got, tmp_out)
    return out
