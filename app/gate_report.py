"""Evidence for the promotion gate: champion and challenger re-scored on the same test split.

The champion's weights come from the registry (the `model` artifact of its pyfunc, read without
importing the logged code), the challenger's from `data/model/model.pt`; both predict the DVC-pinned
`data/prepared/test_*.npy` of this run. The paired tests of `vistune.evaluate.significance` then decide, and
the report (markdown + CSV tables: metric deltas with CIs, McNemar, per-class F1 deltas, the images
the challenger newly gets wrong) is written to `data/registry/gate_report.md` and logged to MLflow
under `gate/`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from integrations import tags as T
from integrations.registry import Comparison
from vistune.evaluate import significance as sig
from vistune.models.classifier import Classifier
from vistune.config import RegisterCfg
from vistune.io import write_text

GATE_METRICS = {"test_accuracy": "accuracy", "test_macro_f1": "macro_f1"}
SEED = 0


@dataclass
class EvalSet:
    images: torch.Tensor  # uint8 N x 3 x S x S
    labels: np.ndarray
    classes: list[str]
    names: list[str]  # one per image (manifest path), for "newly wrong" lists


def champion_weights(client, name: str, version: str, dest: Path) -> Path:
    """Download only the `model` artifact (vistune-model/1 weights) of a registered pyfunc, verified
    against the version's `vistune.model_sha256` tag before anything unpickles it."""
    import mlflow

    from vistune.models.trust import verify_sha256

    base = client.get_model_version_download_uri(name, version).rstrip("/")
    mlmodel = yaml.safe_load(Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{base}/MLmodel",
                                                                      dst_path=str(dest))).read_text())
    try:
        rel = mlmodel["flavors"]["python_function"]["artifacts"]["model"]["path"]
    except (KeyError, TypeError):
        raise ValueError(f"v{version} is not a vistune pyfunc (no `model` artifact in its MLmodel)") from None
    weights = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{base}/{rel}", dst_path=str(dest)))
    expected = client.get_model_version(name, version).tags.get(T.MODEL_SHA256)
    if expected:
        verify_sha256(weights, expected, f"the vistune.model_sha256 tag of v{version}")
    return weights


def predict(model_file: Path, data: EvalSet, batch_size: int = 256) -> np.ndarray:
    """Class indices (in `data.classes` order) a saved model predicts for the eval set."""
    clf = Classifier.load(model_file, device="cpu")
    unknown = sorted(set(clf.classes) - set(data.classes))
    if unknown:
        raise ValueError(f"model predicts classes this test split lacks: {unknown[:5]}")
    images = data.images
    if images.shape[-1] != clf.image_size:  # champion trained at another augment.image_size
        images = torch.nn.functional.interpolate(images.float(), size=(clf.image_size, clf.image_size),
                                                 mode="bilinear", antialias=True, align_corners=False)
        images = images.round().clamp(0, 255).to(torch.uint8)
    pred = clf.logits(images, batch_size=batch_size).argmax(dim=1).numpy()
    remap = np.array([data.classes.index(c) for c in clf.classes])
    return remap[pred] if len(pred) else pred.astype(np.int64)


def _fmt(x: float) -> str:
    return f"{x:+.4f}"


def evidence(data: EvalSet, champ_pred: np.ndarray, chal_pred: np.ndarray, cfg: RegisterCfg,
             champion: str, challenger: str) -> tuple[Comparison, dict[str, pd.DataFrame], str]:
    """(the gate's Comparison, CSV tables, markdown report) for one champion/challenger pair."""
    y, k = data.labels, len(data.classes)
    mc = sig.mcnemar(champ_pred == y, chal_pred == y)
    confidence = 1.0 - cfg.gate_alpha
    boots = {m: sig.paired_bootstrap(y, champ_pred, chal_pred, m, k, cfg.gate_n_boot, confidence, SEED)
             for m in sig.METRICS}
    values = {m: (float(sig.METRICS[m](y, champ_pred, k)[0]), float(sig.METRICS[m](y, chal_pred, k)[0]))
              for m in sig.METRICS}
    metric = GATE_METRICS.get(cfg.gate_metric)
    required = cfg.gate_test != "none" and cfg.min_improvement >= 0  # a negative margin waives the test
    ok, why = sig.is_significant(cfg.gate_test, cfg.gate_alpha, mc, boots[metric or "accuracy"])
    if cfg.gate_test != "none" and not required:
        why += " (not required: register.min_improvement < 0)"
    if cfg.gate_test == "bootstrap" and metric is None:
        why += f" (on accuracy: {cfg.gate_metric} cannot be re-scored)"
    finding = sig.verdict(cfg.gate_test, cfg.gate_alpha, mc, boots[metric or "accuracy"])
    p_value = {"mcnemar": mc.p_value, "bootstrap": boots[metric or "accuracy"].p_value}.get(cfg.gate_test)
    comparison = Comparison(ok if required else None, why,
                            values[metric][0] if metric else None, values[metric][1] if metric else None,
                            verdict=finding, p_value=p_value)
    metrics = pd.DataFrame([{"metric": m, "champion": values[m][0], "challenger": values[m][1], "delta": b.delta,
                             "ci_low": b.low, "ci_high": b.high, "confidence": b.confidence,
                             "p_not_better": b.p_value, "n_boot": b.n_boot} for m, b in boots.items()])
    mcn = pd.DataFrame([{"test": "mcnemar", **mc.as_dict(), "alpha": cfg.gate_alpha, "n": len(y)}])
    f1a, f1b = sig.per_class_f1(y, champ_pred, k), sig.per_class_f1(y, chal_pred, k)
    per_class = pd.DataFrame({"class": data.classes, "support": np.bincount(y, minlength=k)[:k],
                              "champion_f1": f1a, "challenger_f1": f1b, "delta": f1b - f1a})
    lost = np.flatnonzero((champ_pred == y) & (chal_pred != y))
    newly_wrong = pd.DataFrame({"index": lost, "image": [data.names[i] for i in lost],
                                "actual": [data.classes[y[i]] for i in lost],
                                "challenger_predicted": [data.classes[chal_pred[i]] for i in lost]})
    tables = {"metrics": metrics, "mcnemar": mcn, "per_class": per_class, "newly_wrong": newly_wrong}
    lines = [
        f"# Gate report: challenger v{challenger} vs champion v{champion}", "",
        f"Both re-scored on this run's test split ({len(y)} images). Test: `{cfg.gate_test}` at alpha "
        f"{cfg.gate_alpha}, challenger vs champion: **{finding}**. {why}.", "",
        "## Metrics (challenger - champion, paired bootstrap "
        f"{confidence:.0%} CI, {cfg.gate_n_boot} resamples)", "",
        "| metric | champion | challenger | delta | CI |", "|---|---|---|---|---|",
        *[f"| {r.metric} | {r.champion:.4f} | {r.challenger:.4f} | {_fmt(r.delta)} | "
          f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}] |" for r in metrics.itertuples()], "",
        f"McNemar ({mc.method}): challenger right / champion wrong **{mc.gained}**, champion right / "
        f"challenger wrong **{mc.lost}**, statistic {mc.statistic:.3f}, p = {mc.p_value:.4g}.", "",
        "## Per-class F1", "", per_class.to_markdown(index=False, floatfmt=".4f"), "",
        f"## Images the challenger newly gets wrong ({len(lost)})", "",
        newly_wrong.to_markdown(index=False) if len(lost) else "none", "",
    ]
    return comparison, tables, "\n".join(lines)


def placeholder(version: str, reason: str) -> str:
    return f"# Gate report: v{version}\n\nNo champion comparison: {reason}.\n"


def write(report_md: Path, markdown: str, tables: dict[str, pd.DataFrame], client=None, run_id: str | None = None) -> None:
    """Write the markdown out (DVC out) and log markdown + CSVs under `gate/` of the MLflow run."""
    write_text(report_md, markdown)
    if client is None or run_id is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "gate_report.md").write_text(markdown)
        for key, frame in tables.items():
            frame.to_csv(Path(tmp) / f"gate_{key}.csv", index=False)
        client.log_artifacts(run_id, tmp, artifact_path="gate")


def load_eval_set(layout) -> EvalSet:
    """This run's prepared test split, with each image's manifest path as its name."""
    from vistune.data.prepared import load_prepared

    data = load_prepared(layout.prepared, splits=("test",))
    images, labels = data.tensors("test")
    names = [f"test[{i}]" for i in range(len(labels))]
    if layout.manifest.is_file():
        manifest = pd.read_csv(layout.manifest, dtype={"label": str})
        paths = list(manifest[manifest.split == "test"].path)
        if len(paths) == len(labels):
            names = paths
    return EvalSet(images, labels.numpy(), data.classes, names)


def make_compare(client, cfg: RegisterCfg, layout, version: str, run_id: str, report_md: Path):
    """The gate's `compare(champion_version)`: re-score both, write + log the report, return the verdict.
    A champion that cannot be re-scored gives a Comparison carrying the error (the gate decides)."""

    def compare(champion: str) -> Comparison:
        try:
            data = load_eval_set(layout)
            with tempfile.TemporaryDirectory() as tmp:
                champ_pred = predict(champion_weights(client, cfg.model_name, champion, Path(tmp)), data)
            chal_pred = predict(layout.model, data)
        except Exception as exc:  # missing artifact, other classes, unreadable weights: reported, not fatal
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            write(report_md, placeholder(version, f"champion v{champion} could not be re-scored ({reason})"), {},
                  client, run_id)
            return Comparison(None if cfg.gate_test == "none" else False, f"champion not re-scored ({reason})",
                              error=reason)
        comparison, tables, markdown = evidence(data, champ_pred, chal_pred, cfg, champion, version)
        write(report_md, markdown, tables, client, run_id)
        return comparison

    return compare
