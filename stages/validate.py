"""Stage `validate`: a Great Expectations suite over the image manifest; bad files are quarantined.

Nothing under data/raw is touched. Files failing a row-level expectation are listed in
quarantine.csv with a one-line reason and left out of manifest.csv, which feeds `augment`.
The stage fails when more than `validate.max_bad_fraction` of files are bad, a split is empty,
or a class is missing from a split.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from integrations.expectations import run_suite
from stages.cli import stage_main
from vistune.config import ValidateCfg
from vistune.errors import DataError
from vistune.io import read_json, write_json, write_text
from vistune.layout import Layout
from vistune.manifest import build_manifest
from vistune.sources import SPLITS


@dataclass
class ValidateResult:
    good: pd.DataFrame
    quarantine: pd.DataFrame
    summary: dict


def _quarantine_rows(manifest: pd.DataFrame, outcomes) -> dict[int, str]:
    reasons: dict[int, str] = {}
    for oc in outcomes:
        for i in oc.unexpected_index:
            if i not in reasons:
                row = manifest.iloc[i].to_dict()
                reasons[i] = oc.reason.format(**row) or "failed " + oc.expectation
    return reasons


def _dataset_errors(good: pd.DataFrame, cfg: ValidateCfg) -> list[str]:
    errors = []
    train_classes = set(good.loc[good.split == "train", "label"])
    for split in SPLITS:
        part = good[good.split == split]
        if part.empty:
            errors.append(f"split {split!r} has no valid images")
            continue
        missing = sorted(train_classes - set(part.label))
        if missing:
            errors.append(f"split {split!r} lacks classes {missing}")
    counts = good[good.split == "train"].label.value_counts()
    small = sorted(counts[counts < cfg.min_images_per_class].index)
    if small:
        errors.append(f"train classes with fewer than {cfg.min_images_per_class} images: {small}")
    return errors


def run(cfg: ValidateCfg, layout: Layout) -> ValidateResult:
    manifest = build_manifest(layout.raw, max_pixels=cfg.max_pixels)
    if manifest.empty:
        raise DataError(f"{layout.raw}: no files to validate; check data.source and run `dvc repro ingest`")
    suite = run_suite(manifest, cfg, docs_dir=layout.validation_docs)
    reasons = _quarantine_rows(manifest, suite.outcomes)
    bad = manifest.loc[sorted(reasons)].assign(reason=[reasons[i] for i in sorted(reasons)])
    refused = read_json(layout.ingest_report).get("skipped", []) if layout.ingest_report.is_file() else []
    quarantine = pd.concat(
        [bad[["path", "split", "label", "reason"]],
         pd.DataFrame(refused, columns=["path", "reason"]).assign(split="", label="")[["path", "split", "label", "reason"]]],
        ignore_index=True,
    )
    good = manifest.drop(index=list(reasons)).reset_index(drop=True)
    n_total = len(manifest) + len(refused)
    bad_fraction = len(quarantine) / n_total
    by_reason = Counter(r.split(" (")[0] for r in quarantine.reason)
    summary = {
        "n_files": n_total, "n_good": len(good), "n_quarantined": len(quarantine), "bad_fraction": bad_fraction,
        "n_classes": int(good.label.nunique()),
        "split_counts": {s: int((good.split == s).sum()) for s in SPLITS},
        "quarantine_reasons": dict(by_reason), "expectations_passed": suite.success,
    }
    layout.validated.mkdir(parents=True, exist_ok=True)
    write_text(layout.manifest, good.to_csv(index=False))
    write_text(layout.quarantine, quarantine.to_csv(index=False))
    write_json(layout.validation_summary, summary)
    print(f"{len(good)} good, {len(quarantine)} quarantined of {n_total} files ({bad_fraction:.1%})")
    for _, row in quarantine.head(10).iterrows():
        print(f"  quarantined {row.path}: {row.reason}")
    errors = _dataset_errors(good, cfg)
    if bad_fraction > cfg.max_bad_fraction:
        errors.insert(0, f"{bad_fraction:.1%} of files are bad (> validate.max_bad_fraction={cfg.max_bad_fraction}): "
                         f"{dict(by_reason)}")
    if errors:
        raise DataError(
            f"{layout.raw}: " + "; ".join(errors) +
            f". See {layout.quarantine}; fix or remove the files in the source, or relax validate.* in params.yaml"
        )
    return ValidateResult(good=good, quarantine=quarantine, summary=summary)


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("validate", argv, lambda p, layout: run(p.validate, layout))


if __name__ == "__main__":
    sys.exit(main())
