"""Stage `validate`: a Great Expectations suite over the image manifest; bad files are quarantined.

Nothing under data/raw is touched. Each file failing a row-level expectation is listed once in
quarantine.csv (its first failure: code + one-line reason) and left out of manifest.csv, which
feeds `augment`. Some codes only warn, by policy: duplicates within a split (`on_duplicate: warn`)
and an extension that disagrees with the content (`on_extension_mismatch: warn`, the default; the
file stays in manifest.csv with `extension_mismatch` true). An image found in two splits is always
quarantined from the later split (val/test) with a warning naming the pairs; the stage fails only
when more than `validate.max_leaked_fraction` of val+test leaked (a broken split). It also fails
when more than `validate.max_bad_fraction` of files are bad (leaked copies are not bad files), a
split is empty, splits disagree on classes, or a train class is too small.
summary.json is a flat DVC metric (counts per failure code, imbalance, split sizes).
Label issues (`vistune.data.label_issues`): the good train+val images are scored by a linear head in
K-fold on `train.model`'s pretrained features (cached by sha256); confident learning flags those whose
label looks wrong into label_issues.csv, most suspicious first. `validate.on_label_issue`: warn,
exclude (flagged train images are quarantined as `label_issue`, so training leaves them out) or fail.
When a champion is registered, drift.json (also a DVC metric) compares the good images with the
champion's training data (`vistune.evaluate.drift`); above `validate.drift_threshold` a warning,
or a failure with `validate.on_drift: fail`. No champion yet: drift.json says it was skipped.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import pandas as pd

from integrations.expectations import QUARANTINE_CODES, run_suite
from stages.cli import stage_main
from vistune.config import Params, ValidateCfg
from vistune.data.dataquality import (
    DUPLICATE_COLUMNS,
    LEAK_EXAMPLES,
    dataset_findings,
    duplicate_marks,
    leak_messages,
    marked_column,
)
from vistune.data.features import FeatureSpec, embed_files, save_cache
from vistune.data.label_issues import LabelReview, empty_table, review_features
from vistune.data.lookalikes import find_lookalikes
from vistune.data.imageio import format_names
from vistune.errors import ConfigError, DataError
from vistune.io import atomic_path, read_json, write_json, write_text
from vistune.layout import Layout
from vistune.data.manifest import manifest_parts, preferred_extension
from vistune.data.manifest_store import StoredManifest, store_manifest
from vistune.data.sources.common import SPLITS

if TYPE_CHECKING:
    from vistune.evaluate.drift import DriftResult

DUPLICATE_CODES = ("duplicate", "near_duplicate")
NOT_BAD_CODES = ("leakage", "label_issue", "lookalike")  # quarantined by policy, not broken files
MARK_COLUMNS = (*DUPLICATE_COLUMNS, "lookalike_of")  # cross-row marks written into manifest.csv
LOOKALIKE_PAIRS = 9  # closest pairs shown in data/reports/lookalikes.png
QUARANTINE_COLUMNS = ["path", "split", "label", "code", "reason"]
GOOD_FACTS = ["split", "label", "extension_mismatch", "exif_rotated", "brightness"]


@dataclass
class ValidateResult:
    manifest_path: Path  # the good rows (manifest.csv), written part by part; `good` reads them back
    quarantine: pd.DataFrame
    summary: dict
    warnings: list[str]

    @property
    def good(self) -> pd.DataFrame:
        return read_good(self.manifest_path)


def read_good(path: Path) -> pd.DataFrame:
    """manifest.csv as a DataFrame (text columns as text, "" kept), for the drift check with a champion."""
    text = {"path", "split", "label", "sha256", "format", "mode", "error", "phash"}
    columns = pd.read_csv(path, nrows=0).columns
    return pd.read_csv(
        path,
        dtype={c: str for c in text & set(columns)},
        keep_default_na=False,
        na_values={c: [""] for c in columns if c not in text},
    )


@dataclass(frozen=True)
class _Flag:
    """A quarantine entry found outside the expectation suite (label issues), shaped like its outcomes."""

    code: str
    text: str
    expectation: str = "label_issues"

    @property
    def reason(self) -> str:  # `_reason` formats it with the row: literal text here
        return self.text.replace("{", "{{").replace("}", "}}")


@dataclass(frozen=True)
class _Embedded:
    """The good labelled rows the feature checks look at, and their pretrained features (one pass)."""

    rows: np.ndarray  # store rows
    paths: list[str]
    splits: np.ndarray
    labels: np.ndarray
    feats: np.ndarray
    n_new: int  # forward passes this run (the rest came from the cache)
    seconds: float


def _embed_good(
    cfg: ValidateCfg, layout: Layout, store: StoredManifest, failures: dict, spec: FeatureSpec | None
) -> _Embedded | None:
    """Features of the good labelled rows: train+val for label issues, test too for lookalikes (None: both off)."""
    wanted = ({"train", "val"} if cfg.label_issue_folds else set()) | (
        set(SPLITS) if cfg.on_lookalike != "off" else set()
    )
    if spec is None or not wanted:
        return None
    if spec.pretrained == "none":
        print("label issues, lookalikes: skipped (train.pretrained is none: no pretrained features to judge by)")
        return None
    facts = store.facts
    keep = np.ones(len(store), dtype=bool)
    keep[list(failures)] = False
    rows = np.flatnonzero(keep & facts.split.isin(sorted(wanted)).to_numpy() & facts.label.ne("").to_numpy())
    paths = store.column_at("path", rows)
    t0 = time.perf_counter()
    feats, n_new = embed_files(
        [layout.raw / p for p in paths], store.column_at("sha256", rows), spec, layout.feature_cache
    )
    splits, labels = facts.split.to_numpy()[rows], facts.label.to_numpy()[rows]
    return _Embedded(rows, paths, splits, labels, feats, n_new, time.perf_counter() - t0)


def _label_review(cfg: ValidateCfg, emb: _Embedded | None) -> tuple[LabelReview | None, dict[str, int]]:
    """Label issues among the good, labelled train+val rows; (review or None when off, path -> row)."""
    if emb is None or cfg.label_issue_folds == 0:
        return None, {}
    tv = np.flatnonzero(np.isin(emb.splits, ["train", "val"]))
    labels = emb.labels[tv].tolist()
    counts = Counter(labels)
    if len(counts) < 2 or min(counts.values()) < 2:
        print("label issues: skipped (needs 2+ classes with 2+ good train/val images each)")
        return None, {}
    paths = [emb.paths[i] for i in tv]
    review = review_features(
        paths,
        emb.splits[tv].tolist(),
        labels,
        emb.feats[tv],
        cfg.label_issue_folds,
        rounds=cfg.label_issue_rounds,
        n_embedded=emb.n_new,
        seconds_embed=emb.seconds,
    )
    print(
        f"label issues: {len(review.table)} of {review.n_checked} train/val images look mislabelled "
        f"(features {review.seconds_embed:.1f}s for {review.n_embedded} new, K-fold + ranking "
        f"{review.seconds_rank:.1f}s)",
        flush=True,
    )
    return review, dict(zip(paths, emb.rows[tv].tolist()))


@dataclass(frozen=True)
class _LookalikeFinding:
    """Val/test store rows -> the train path they look like another shot of; how many were checked."""

    partner_of: dict[int, str]
    n_checked: int
    examples: tuple[tuple[str, str], ...] = ()  # (val/test path, train path), most similar first: named and shown


def _lookalikes(cfg: ValidateCfg, emb: _Embedded | None) -> _LookalikeFinding:
    """The same object in two splits (vistune.data.lookalikes), over the good labelled rows."""
    if emb is None or cfg.on_lookalike == "off":
        return _LookalikeFinding({}, 0)
    t0 = time.perf_counter()
    found = find_lookalikes(emb.feats, emb.labels, emb.splits == "train")
    print(
        f"lookalikes: {len(found.rows)} of {found.n_checked} val/test images look like another shot of a train image "
        f"({time.perf_counter() - t0:.1f}s)",
        flush=True,
    )
    order = np.argsort(-found.similarity, kind="stable")
    return _LookalikeFinding(
        {int(emb.rows[i]): emb.paths[j] for i, j in zip(found.rows, found.partners)},
        found.n_checked,
        tuple((emb.paths[found.rows[k]], emb.paths[found.partners[k]]) for k in order[:LOOKALIKE_PAIRS]),
    )


def _exclude_lookalikes(finding: _LookalikeFinding, failures: dict) -> None:
    """on_lookalike exclude: flagged val/test rows are quarantined (code lookalike); train keeps its copy."""
    for row, partner in finding.partner_of.items():
        failures.setdefault(
            row, _Flag("lookalike", f"looks like another shot of {partner} (train); validate.on_lookalike=exclude")
        )


def _exclude_flagged(review: LabelReview, row_of: dict[str, int], failures: dict) -> None:
    """on_label_issue exclude: flagged train rows join the quarantined ones (code label_issue)."""
    for r in review.table[review.table.split == "train"].itertuples():
        failures.setdefault(
            row_of[r.path],
            _Flag(
                "label_issue",
                (
                    f"labelled {r.given_label} but looks like {r.suggested_label} (score {r.score:.3f}); "
                    "validate.on_label_issue=exclude"
                ),
            ),
        )


def _warn_codes(cfg: ValidateCfg) -> set[str]:
    """Failure codes that keep the file, with a warning, under this policy."""
    return ({*DUPLICATE_CODES} if cfg.on_duplicate == "warn" else set()) | (
        {"extension"} if cfg.on_extension_mismatch == "warn" else set()
    )


def _first_failures(outcomes, warn_codes: set[str]) -> tuple[dict, dict]:
    """Row index -> outcome of the first expectation it fails, in suite order: (quarantined, warned).
    A warned row stays only if no quarantining rule fails too; a warning never hides one."""
    found: dict[int, object] = {}
    warned: dict[int, object] = {}
    for oc in outcomes:
        into = warned if oc.code in warn_codes else found
        for i in oc.unexpected_index:
            into.setdefault(i, oc)
    return found, {i: oc for i, oc in warned.items() if i not in found}


def _reason(oc, row: dict) -> str:
    return oc.reason.format(**row) or "failed " + oc.expectation


def _warning(row: pd.Series, code: str, reason: str) -> str:
    if code == "extension":
        return (
            f"{row['path']}: content is {row['format']} but the name ends {Path(row['path']).suffix or '(none)'}; "
            f"rename it to {preferred_extension(row['format'])} (kept: validate.on_extension_mismatch=warn)"
        )
    return f"{row['path']}: {reason} (kept: validate.on_duplicate=warn)"


def _check_formats(cfg: ValidateCfg) -> None:
    unknown = sorted(set(cfg.allowed_formats) - set(format_names()))
    if unknown:
        raise ConfigError(
            f"params.yaml: validate.allowed_formats lists {unknown}, not formats this Pillow decodes; "
            f"valid: [] (any) or names from {list(format_names())}"
        )


def _refused_at_ingest(layout: Layout) -> pd.DataFrame:
    refused = read_json(layout.ingest_report).get("skipped", []) if layout.ingest_report.is_file() else []
    rows = [
        {"path": r["path"], "split": "", "label": "", "code": r.get("code") or "refused", "reason": r["reason"]}
        for r in refused
    ]
    return pd.DataFrame(rows, columns=QUARANTINE_COLUMNS)


def _summary(
    manifest, good, quarantine, findings, n_total, suite_ok, n_warnings, leaked_fraction, review: LabelReview | None
) -> dict:
    n_issues = len(review.table) if review is not None else 0
    codes = Counter(c if c in QUARANTINE_CODES else "refused" for c in quarantine.code)
    return {
        "n_files": n_total,
        "n_good": len(good),
        "n_quarantined": len(quarantine),
        "bad_fraction": round(int((~quarantine.code.isin(NOT_BAD_CODES)).sum()) / max(n_total, 1), 6),
        **{f"n_{s}": int((good.split == s).sum()) for s in SPLITS},
        "n_classes": int(good.label.nunique()),
        **{f"quarantined_{c}": int(codes.get(c, 0)) for c in QUARANTINE_CODES},
        "n_leaked": int(manifest.leak_of.notna().sum()),
        "leaked_fraction": leaked_fraction,
        "n_extension_mismatch": int(good.extension_mismatch.fillna(False).astype(bool).sum()),
        "n_exact_duplicates": int(manifest.exact_dup_of.notna().sum()),
        "n_near_duplicates": int(manifest.near_dup_of.notna().sum()),
        "n_exif_rotated": int(good.exif_rotated.fillna(False).astype(bool).sum()),
        "imbalance_ratio": findings.imbalance_ratio,
        "train_class_counts": findings.class_counts,
        "mean_brightness": round(float(good.brightness.mean()), 4) if len(good) else 0.0,
        "n_label_issues": n_issues,
        "label_issue_fraction": round(n_issues / review.n_checked, 6) if review is not None else 0.0,
        "n_warnings": n_warnings,
        "expectations_passed": suite_ok,
    }


def _marked(store: StoredManifest, cfg: ValidateCfg) -> pd.DataFrame:
    """The store's facts, given `leak_of` / `exact_dup_of` / `near_dup_of` in place
    (`dataquality.duplicate_marks`; no second copy of the facts)."""
    facts = store.facts
    candidates = facts.decodable.fillna(False).astype(bool).to_numpy() & (store.sha != b"")
    short_side = np.minimum(facts.width.fillna(0), facts.height.fillna(0)).to_numpy()
    marks = duplicate_marks(
        facts.split.to_numpy(),
        store.sha,
        store.phash,
        candidates,
        short_side,
        lambda rows: store.column_at("path", rows),
        cfg.near_duplicate_distance,
        cfg.near_duplicate_min_side,
    )
    for col in DUPLICATE_COLUMNS:
        facts[col] = marked_column(len(facts), marks[col])
    return facts


def _write_outputs(
    store: StoredManifest, marked: pd.DataFrame, failures: dict, warned: dict, layout: Layout
) -> tuple[pd.DataFrame, list[str]]:
    """One pass over the stored parts: manifest.csv (good rows, appended part by part), the
    quarantined rows with their reasons and the warnings, each formatted from its full row."""
    bad, warnings = [], []
    with atomic_path(layout.manifest) as tmp, open(tmp, "w", encoding="utf-8", newline="") as out:
        for offset, part in store.iter_parts():
            rows = range(offset, offset + len(part))
            part = part.assign(**{c: marked[c].to_numpy()[offset : offset + len(part)] for c in MARK_COLUMNS})
            for i in (i for i in rows if i in failures or i in warned):
                row = part.iloc[i - offset].to_dict()
                if i in failures:
                    bad.append((row["path"], row["split"], row["label"], failures[i].code, _reason(failures[i], row)))
                else:
                    warnings.append(_warning(row, warned[i].code, _reason(warned[i], row)))
            keep = [i not in failures for i in rows]
            part[keep].to_csv(out, index=False, header=offset == 0)
    bad_frame = pd.DataFrame(bad, columns=QUARANTINE_COLUMNS)
    return bad_frame, warnings


def run(
    cfg: ValidateCfg,
    layout: Layout,
    *,
    before_read: Callable[[Path], None] | None = None,
    features: FeatureSpec | None = None,
) -> ValidateResult:
    """The manifest is built and kept part by part on disk (`manifest_store`): memory holds a few
    compact facts a file, so it stays flat as the data grows. `features`: the backbone whose
    pretrained features judge the labels (None: no label-issue search)."""
    _check_formats(cfg)
    layout.validated.mkdir(parents=True, exist_ok=True)
    # beside the outputs, on the data's disk (a RAM-backed /tmp would hold the spilled rows in memory)
    with tempfile.TemporaryDirectory(prefix=".manifest-parts-", dir=layout.validated) as spill:
        t = [time.perf_counter()]
        store = store_manifest(
            manifest_parts(
                layout.raw,
                max_pixels=cfg.max_pixels,
                workers=cfg.workers,
                cache_path=layout.decode_cache,
                before_read=before_read,
                timeout_s=cfg.decode_timeout_s or None,
            ),
            Path(spill),
        )
        if not len(store):
            raise DataError(f"{layout.raw}: no files to validate; check data.source and run `dvc repro ingest`")
        t.append(time.perf_counter())
        marked = _marked(store, cfg)
        t.append(time.perf_counter())
        suite = run_suite(marked, cfg, docs_dir=layout.validation_docs)
        t.append(time.perf_counter())
        print(
            f"validate phases: read+decode+pHash {t[1] - t[0]:.1f}s, duplicate search {t[2] - t[1]:.1f}s, "
            f"expectation suite {t[3] - t[2]:.1f}s ({len(store)} files)",
            flush=True,
        )
        failures, warned = _first_failures(suite.outcomes, _warn_codes(cfg))
        embedded = _embed_good(cfg, layout, store, failures, features)
        review, row_of = _label_review(cfg, embedded)
        looks = _lookalikes(cfg, embedded)
        marked["lookalike_of"] = marked_column(len(marked), looks.partner_of)
        if not layout.feature_cache.exists():  # a declared DVC out, even with the checks off
            save_cache(layout.feature_cache, "none", [], np.zeros((0, 0), np.float16))
        if review is not None and cfg.on_label_issue == "exclude":
            _exclude_flagged(review, row_of, failures)
        if cfg.on_lookalike == "exclude":
            _exclude_lookalikes(looks, failures)
        bad, row_warnings = _write_outputs(store, marked, failures, warned, layout)
        leaked = sorted(marked.index[marked.leak_of.notna()])[:LEAK_EXAMPLES]
        paths = dict(zip(leaked, store.column_at("path", leaked)))
    with_paths = marked[["split", "leak_of"]].assign(path=marked_column(len(marked), paths))  # pairs named
    leaked_fraction, leak_errors, leak_warnings = leak_messages(with_paths, cfg.max_leaked_fraction, cfg.max_leaked)
    warnings = leak_warnings + _lookalike_messages(cfg, looks) + row_warnings
    quarantine = pd.concat([bad, _refused_at_ingest(layout)], ignore_index=True)[QUARANTINE_COLUMNS]
    kept = np.ones(len(marked), dtype=bool)
    kept[list(failures)] = False
    good = marked.loc[kept, GOOD_FACTS].reset_index(drop=True)  # what the findings and summary count
    return _finish(
        cfg, layout, marked, good, bad, quarantine, warnings, leaked_fraction, leak_errors, suite.success, review, looks
    )


SHEET_SUSPECTS = 12  # thumbnails in data/reports/label_issues.png (and pairs in lookalikes.png: LOOKALIKE_PAIRS)
SHEET_SIZE = 96


def _label_sheet(layout: Layout, table: pd.DataFrame) -> None:
    """The top suspects as captioned thumbnails, decoded as training decodes them."""
    from vistune.evaluate.plots import thumbnail_sheet_png
    from vistune.models.classifier import prepare_images

    top = table.head(SHEET_SUSPECTS)
    images = prepare_images([(layout.raw / p).read_bytes() for p in top.path], SHEET_SIZE)
    captions = [
        f"{r.given_label} -> {r.suggested_label} ({r.score:.2f})\n{Path(r.path).name[:24]}" for r in top.itertuples()
    ]
    thumbnail_sheet_png(list(images), captions, layout.label_issue_sheet, "no label issues flagged")


def _lookalike_sheet(layout: Layout, looks: _LookalikeFinding) -> None:
    """The closest look-alike pairs, the val/test photo left of the train photo it looks like."""
    from vistune.evaluate.plots import thumbnail_sheet_png
    from vistune.models.classifier import prepare_images

    pairs = looks.examples
    images = prepare_images([(layout.raw / p).read_bytes() for pair in pairs for p in pair], SHEET_SIZE)
    gap = np.full((3, SHEET_SIZE, 4), 255, dtype=np.uint8)
    side_by_side = [np.concatenate([images[2 * k], gap, images[2 * k + 1]], axis=2) for k in range(len(pairs))]
    captions = [f"{Path(a).parts[0]} {Path(a).name[:20]}\nlooks like train {Path(b).name[:20]}" for a, b in pairs]
    cols = min(3, max(len(pairs), 1))
    thumbnail_sheet_png(side_by_side, captions, layout.lookalike_sheet, "no look-alikes across splits", cols=cols)


def _label_messages(cfg: ValidateCfg, review: LabelReview | None) -> tuple[list[str], list[str]]:
    """(warnings, errors) about label issues under `validate.on_label_issue`."""
    if review is None or review.table.empty:
        return [], []
    t = review.table
    line = f"{len(t)} of {review.n_checked} train/val images look mislabelled, e.g. " + ", ".join(
        f"{r.path} ({r.given_label} -> {r.suggested_label})" for r in t.head(3).itertuples()
    )
    fraction = len(t) / review.n_checked
    if cfg.on_label_issue == "fail" and fraction > cfg.max_label_issue_fraction:
        error = (
            f"{line} ({fraction:.1%} > validate.max_label_issue_fraction={cfg.max_label_issue_fraction}; "
            "see data/validated/label_issues.csv, fix the labels or set validate.on_label_issue: warn)"
        )
        return [], [error]
    action = "train ones quarantined" if cfg.on_label_issue == "exclude" else "kept"
    return [f"{line}; see data/validated/label_issues.csv ({action}: validate.on_label_issue={cfg.on_label_issue})"], []


def _lookalike_metrics(looks: _LookalikeFinding) -> dict:
    n = len(looks.partner_of)
    return {"n_leaked_lookalike": n, "leaked_lookalike_fraction": round(n / max(looks.n_checked, 1), 6)}


def _lookalike_messages(cfg: ValidateCfg, looks: _LookalikeFinding) -> list[str]:
    """One warning naming a few pairs: val/test scores on another shot of a train object are optimistic."""
    if not looks.partner_of:
        return []
    action = "quarantined" if cfg.on_lookalike == "exclude" else "kept"
    return [
        f"{len(looks.partner_of)} of {looks.n_checked} val/test images look like another shot of a train image "
        f"(lookalike_of in manifest.csv), e.g. "
        + ", ".join(f"{path} -> {partner}" for path, partner in looks.examples[:LEAK_EXAMPLES])
        + f"; val/test scores on them are optimistic: split by object, or remove them ({action}: "
        f"validate.on_lookalike={cfg.on_lookalike})"
    ]


def _finish(
    cfg,
    layout,
    marked,
    good,
    bad,
    quarantine,
    warnings,
    leaked_fraction,
    leak_errors,
    suite_ok,
    review: LabelReview | None = None,
    looks: _LookalikeFinding | None = None,
) -> ValidateResult:
    """Split findings, summary.json, the printed report, and the stage's verdict."""
    looks = looks or _LookalikeFinding({}, 0)  # the search off or never reached
    findings = dataset_findings(good, cfg.min_images_per_class, cfg.max_imbalance_ratio)
    label_warnings, label_errors = _label_messages(cfg, review)
    warnings += findings.warnings + label_warnings
    n_total = len(marked) + len(quarantine) - len(bad)
    summary = _summary(marked, good, quarantine, findings, n_total, suite_ok, len(warnings), leaked_fraction, review)
    summary.update(_lookalike_metrics(looks))
    table = review.table if review is not None else empty_table()
    write_text(layout.label_issues, table.to_csv(index=False))
    _label_sheet(layout, table)
    _lookalike_sheet(layout, looks)
    write_text(layout.quarantine, quarantine.to_csv(index=False))
    write_json(layout.validation_summary, summary)
    print(f"{len(good)} good, {len(quarantine)} quarantined of {n_total} files ({summary['bad_fraction']:.1%})")
    for _, row in quarantine.head(10).iterrows():
        print(f"  quarantined {row.path} [{row.code}]: {row.reason}")
    for w in warnings[:10]:
        print(f"  warning: {w}")

    errors = list(findings.errors) + leak_errors + label_errors
    by_code = {
        c[len("quarantined_") :]: n
        for c, n in summary.items()
        if c.startswith("quarantined_") and n and c[len("quarantined_") :] not in NOT_BAD_CODES
    }
    if summary["bad_fraction"] > cfg.max_bad_fraction:
        bad_files = quarantine[~quarantine.code.isin(NOT_BAD_CODES)]
        errors.insert(
            0,
            f"{summary['bad_fraction']:.1%} of files are bad (> validate.max_bad_fraction="
            f"{cfg.max_bad_fraction}): {by_code}, e.g. {list(bad_files.path.head(3))}",
        )
    n_dup = int(bad.code.isin(DUPLICATE_CODES).sum())
    if cfg.on_duplicate == "fail" and n_dup:
        errors.append(f"{n_dup} duplicate image(s) within a split (validate.on_duplicate=fail)")
    if errors:
        raise DataError(
            f"{layout.raw}: "
            + "; ".join(errors)
            + f". See {layout.quarantine}; fix or remove the files in the source, or relax validate.* in params.yaml"
        )
    return ValidateResult(manifest_path=layout.manifest, quarantine=quarantine, summary=summary, warnings=warnings)


def check_drift(params: Params, layout: Layout, good: pd.DataFrame | None = None) -> DriftResult:
    """drift.json: the good images (default: manifest.csv, read only when there is a champion to
    compare with) against the champion's training data (skipped without a champion)."""
    from integrations import champion
    from vistune.evaluate import drift

    cfg = params.validate
    new = good if good is not None else (lambda: read_good(layout.manifest))
    result = champion.drift_vs_champion(params.register, cfg, layout.root.resolve(), new, layout.raw)
    write_json(layout.drift, result.as_metrics())
    print(drift.summary_line(result))
    if result.drifted and cfg.on_drift == "fail":
        raise DataError(
            f"{layout.raw}: new data drifted from the champion's training data: "
            f"{drift.summary_line(result)}; see {layout.drift}. Retrain on it deliberately, "
            f"or set validate.on_drift: warn"
        )
    return result


def feature_spec(params: Params) -> FeatureSpec:
    """The backbone `train` starts from, at `augment`'s decode size: what judges the labels."""
    t = params.train
    return FeatureSpec(t.model, t.pretrained, t.pretrained_sha256, params.augment.image_size)


def _run_all(params: Params, layout: Layout) -> ValidateResult:
    result = run(params.validate, layout, features=feature_spec(params))
    check_drift(params, layout)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("validate", argv, _run_all)


if __name__ == "__main__":
    sys.exit(main())
