"""Batch scoring with a registered model: `vistune score SOURCE` and the Prefect `score` flow.

source (folder, archive, CSV) -> the training validation rules (the same GX suite; bad files go to
quarantine.csv with a code and reason, never a crash) -> predictions of the version chosen by alias
or number (weights and temperature from the registry, device and batch size as in training and
evaluate: `train.device`, `runtime.threads`, `evaluate.batch_size`) -> in the output folder:

- predictions.csv: path (relative to the source), label, confidence, p_<class>, model_version
  (plus given_label when the source carries labels); tracked by DVC with `dvc add` when the folder
  is inside a DVC repository, so `git add <out>/predictions.csv.dvc` versions the scores;
- quarantine.csv, drift.json (these images against the model's training data), summary.json.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from integrations import champion
from integrations.expectations import run_suite
from vistune.config import Params
from vistune.data.manifest import build_manifest
from vistune.data.score_source import collect
from vistune.errors import DataError, VistuneError
from vistune.evaluate import drift
from vistune.io import write_json, write_text
from vistune.models.batch_predict import predict_files
from vistune.models.classifier import Classifier
from vistune.models.device_policy import setup_device

NOT_APPLICABLE = {"leakage", "duplicate", "near_duplicate", "no_label"}  # training-set rules
QUARANTINE_COLUMNS = ["path", "code", "reason"]
LEAST_CONFIDENT = 20


class _Clock:
    """Seconds per phase, for summary.json and the benchmark."""

    def __init__(self) -> None:
        self.t, self.laps = time.perf_counter(), {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self.t, 3)
        self.t = now


@dataclass
class ScoreResult:
    model: str  # "vistune-classifier v3 (champion)"
    version: str
    out: Path
    predictions: pd.DataFrame
    quarantine: pd.DataFrame
    drift: drift.DriftResult
    summary: dict

    def label_counts(self) -> list[dict]:
        counts = self.predictions.label.value_counts()
        return [
            {"label": str(k), "images": int(v), "share": round(v / len(self.predictions), 4)} for k, v in counts.items()
        ]

    def least_confident(self, n: int = LEAST_CONFIDENT) -> list[dict]:
        rows = self.predictions.nsmallest(n, "confidence")[["path", "label", "confidence"]]
        return rows.round({"confidence": 4}).to_dict("records")


def quarantine_rows(manifest: pd.DataFrame, cfg) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(good rows, quarantine rows) under the training suite; duplicate/leak rules do not apply."""
    suite = run_suite(manifest.assign(leak_of=None, exact_dup_of=None, near_dup_of=None), cfg)
    skip = NOT_APPLICABLE | ({"extension"} if cfg.on_extension_mismatch == "warn" else set())
    bad: dict[int, tuple[str, str]] = {}
    for oc in suite.outcomes:
        if oc.code in skip:
            continue
        for i in oc.unexpected_index:
            if i not in bad:
                bad[i] = (oc.code, oc.reason.format(**manifest.iloc[i].to_dict()) or "failed " + oc.expectation)
    order = sorted(bad)
    quarantine = pd.DataFrame(
        {
            "path": manifest.path.iloc[order].tolist(),
            "code": [bad[i][0] for i in order],
            "reason": [bad[i][1] for i in order],
        },
        columns=QUARANTINE_COLUMNS,
    )
    return manifest.drop(index=order).reset_index(drop=True), quarantine


def _predictions(good: pd.DataFrame, probs, classes: list[str], version: str) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "path": good.path.tolist(),
            "label": [classes[i] for i in probs.argmax(axis=1)],
            "confidence": probs.max(axis=1).round(6) if len(good) else [],
        }
    )
    for j, c in enumerate(classes):
        out[f"p_{c}"] = probs[:, j].round(6)
    out["model_version"] = version
    if good.label.astype(str).ne("").all() and len(good):
        out["given_label"] = good.label.astype(str).tolist()
    return out


def _load(params: Params, root: Path, alias: str | None, version: str | None, dest: Path):
    model = champion.fetch(params.register, root, dest, alias=None if version else alias, version=version)
    if model is None:
        raise VistuneError(
            f"{params.register.model_name} has no version with alias {alias!r} in "
            f"{params.register.tracking_uri}; register a model first (`dvc repro`) or pass --version"
        )
    clf = Classifier.load(model.weights, device=params.train.device, temperature=model.temperature)
    setup_device(clf.device)  # as in training: cuDNN autotuning + TF32 on CUDA
    if params.runtime.threads > 0:
        torch.set_num_threads(params.runtime.threads)
    return model, clf


def score(
    source: str | Path,
    params: Params,
    root: Path,
    out: Path,
    alias: str | None = "champion",
    version: str | None = None,
    progress: bool = True,
) -> ScoreResult:
    """Validate, predict and write the outputs of one batch; see the module docstring."""
    cfg = params.validate
    clock = _Clock()
    with tempfile.TemporaryDirectory(prefix="vistune-score-") as tmp:
        model, clf = _load(params, root, alias, version, Path(tmp) / "model")
        clock.lap("load_model")
        files = collect(source, Path(tmp) / "extracted", clf.classes)
        manifest = build_manifest(
            files.root,
            max_pixels=cfg.max_pixels,
            workers=cfg.workers,
            files=files.files,
            timeout_s=cfg.decode_timeout_s or None,
        )
        good, quarantine = (
            quarantine_rows(manifest, cfg) if len(manifest) else (manifest, pd.DataFrame(columns=QUARANTINE_COLUMNS))
        )
        quarantine = pd.concat([quarantine, pd.DataFrame(files.refused, columns=QUARANTINE_COLUMNS)], ignore_index=True)
        if good.empty:
            raise DataError(
                f"{source}: no image passed validation ({len(quarantine)} refused, e.g. "
                f"{quarantine.head(3).to_dict('records')}); nothing to score"
            )
        clock.lap("validate")
        probs = predict_files(
            clf,
            [files.root / p for p in good.path],
            batch_size=params.evaluate.batch_size,
            workers=cfg.workers,
            progress=progress,
        )
        predictions = _predictions(good, probs, clf.classes, model.version)
        clock.lap("predict")
        result = champion.drift_against(model, good, files.root, cfg, clf=clf)
        clock.lap("drift")
    summary = {
        "model": model.label,
        "model_version": model.version,
        "source": str(source),
        "n_files": len(manifest) + len(files.refused),
        "n_scored": len(predictions),
        "n_quarantined": len(quarantine),
        "device": str(clf.device),
        "batch_size": params.evaluate.batch_size,
        "seconds": clock.laps,
    }
    if "given_label" in predictions:
        summary["accuracy"] = round(float((predictions.label == predictions.given_label).mean()), 6)
    _write(out, predictions, quarantine, result, summary)
    return ScoreResult(model.label, model.version, out, predictions, quarantine, result, summary)


def _write(out: Path, predictions, quarantine, result: drift.DriftResult, summary: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "predictions.csv", predictions.to_csv(index=False))
    write_text(out / "quarantine.csv", quarantine.to_csv(index=False))
    write_json(out / "drift.json", result.as_metrics())
    write_json(out / "summary.json", summary)


def track_with_dvc(path: Path, repo: Path) -> Path | None:
    """`dvc add path` when `path` lies in the DVC repository `repo`: the scores get a `.dvc` file
    (commit it with git) and their bytes go to the DVC cache. None outside a DVC repository."""
    path, repo = path.resolve(), repo.resolve()
    if not (repo / ".dvc").is_dir() or not path.is_relative_to(repo):
        return None
    dvc = Path(sys.executable).with_name("dvc")
    proc = subprocess.run(
        [str(dvc), "add", "-q", str(path.relative_to(repo))], cwd=repo, capture_output=True, text=True
    )
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["dvc add failed"])[-1]
        raise VistuneError(f"could not track {path} with DVC ({why}); rerun with --no-dvc to skip tracking")
    return path.with_name(path.name + ".dvc")


def report(result: ScoreResult) -> str:
    """The few lines the CLI prints."""
    lines = [f"scored {len(result.predictions)} images with {result.model} -> {result.out / 'predictions.csv'}"]
    if "accuracy" in result.summary:
        lines.append(f"  accuracy against the source's labels: {result.summary['accuracy']:.4f}")
    if len(result.quarantine):
        lines.append(f"  {len(result.quarantine)} file(s) not scored (see {result.out / 'quarantine.csv'}):")
        lines += [f"    {r.path} [{r.code}]: {r.reason}" for r in result.quarantine.head(10).itertuples()]
    counts = ", ".join(f"{c['label']}: {c['images']}" for c in result.label_counts()[:10])
    lines.append(f"  labels: {counts}")
    lines.append("  " + drift.summary_line(result.drift))
    return "\n".join(lines)
