"""The promotion gate's report: champion and challenger re-scored on the same test split, rendered.

The re-scoring and the paired tests are core code (`vistune.evaluate.rescore`); the champion's weights
come from the registry through `integrations.weights`. The report (markdown + CSV tables: metric deltas
with CIs, McNemar, per-class F1 deltas, the images the challenger newly gets wrong) is written to
`data/registry/gate_report.md` and logged to MLflow under `gate/`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from integrations.registry import Comparison
from integrations.weights import version_weights
from vistune.config import RegisterCfg
from vistune.evaluate.rescore import EvalSet, load_eval_set, paired_evidence, predict
from vistune.io import write_text


def _fmt(x: float) -> str:
    return f"{x:+.4f}"


def evidence(
    data: EvalSet, champ_pred, chal_pred, cfg: RegisterCfg, champion: str, challenger: str
) -> tuple[Comparison, dict[str, pd.DataFrame], str]:
    """(the gate's Comparison, CSV tables, markdown report) for one champion/challenger pair."""
    ev = paired_evidence(data, champ_pred, chal_pred, cfg)
    comparison = Comparison(
        ev.passed, ev.why, ev.champion_value, ev.challenger_value, verdict=ev.finding, p_value=ev.p_value
    )
    mc, metrics, per_class, newly_wrong = (
        ev.mcnemar,
        ev.tables["metrics"],
        ev.tables["per_class"],
        ev.tables["newly_wrong"],
    )
    lines = [
        f"# Gate report: challenger v{challenger} vs champion v{champion}",
        "",
        f"Both re-scored on this run's test split ({len(data.labels)} images). Test: `{cfg.gate_test}` at alpha "
        f"{cfg.gate_alpha}, challenger vs champion: **{ev.finding}**. {ev.why}.",
        "",
        "## Metrics (challenger - champion, paired bootstrap "
        f"{1.0 - cfg.gate_alpha:.0%} CI, {cfg.gate_n_boot} resamples)",
        "",
        "| metric | champion | challenger | delta | CI |",
        "|---|---|---|---|---|",
        *[
            f"| {r.metric} | {r.champion:.4f} | {r.challenger:.4f} | {_fmt(r.delta)} | "
            f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}] |"
            for r in metrics.itertuples()
        ],
        "",
        f"McNemar ({mc.method}): challenger right / champion wrong **{mc.gained}**, champion right / "
        f"challenger wrong **{mc.lost}**, statistic {mc.statistic:.3f}, p = {mc.p_value:.4g}.",
        "",
        "## Per-class F1",
        "",
        per_class.to_markdown(index=False, floatfmt=".4f"),
        "",
        f"## Images the challenger newly gets wrong ({len(newly_wrong)})",
        "",
        newly_wrong.to_markdown(index=False) if len(newly_wrong) else "none",
        "",
    ]
    return comparison, ev.tables, "\n".join(lines)


def placeholder(version: str, reason: str) -> str:
    return f"# Gate report: v{version}\n\nNo champion comparison: {reason}.\n"


def write(
    report_md: Path, markdown: str, tables: dict[str, pd.DataFrame], client=None, run_id: str | None = None
) -> None:
    """Write the markdown out (DVC out) and log markdown + CSVs under `gate/` of the MLflow run."""
    write_text(report_md, markdown)
    if client is None or run_id is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "gate_report.md").write_text(markdown)
        for key, frame in tables.items():
            frame.to_csv(Path(tmp) / f"gate_{key}.csv", index=False)
        client.log_artifacts(run_id, tmp, artifact_path="gate")


def make_compare(client, cfg: RegisterCfg, layout, version: str, run_id: str, report_md: Path):
    """The gate's `compare(champion_version)`: re-score both, write + log the report, return the verdict.
    A champion that cannot be re-scored gives a Comparison carrying the error (the gate decides)."""

    def compare(champion: str) -> Comparison:
        try:
            data = load_eval_set(layout)
            with tempfile.TemporaryDirectory() as tmp:
                champ_pred = predict(version_weights(client, cfg.model_name, champion, Path(tmp)), data)
            chal_pred = predict(layout.model, data)
        except Exception as exc:  # missing artifact, other classes, unreadable weights: reported, not fatal
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            write(
                report_md,
                placeholder(version, f"champion v{champion} could not be re-scored ({reason})"),
                {},
                client,
                run_id,
            )
            return Comparison(
                None if cfg.gate_test == "none" else False, f"champion not re-scored ({reason})", error=reason
            )
        comparison, tables, markdown = evidence(data, champ_pred, chal_pred, cfg, champion, version)
        write(report_md, markdown, tables, client, run_id)
        return comparison

    return compare
