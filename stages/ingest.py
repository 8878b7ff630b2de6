"""Stage `ingest`: materialize `data.source` as an ImageFolder under data/raw (source only read), then
apply the reviewer's `labels.csv` (relabel / exclude; `vistune.data.label_overrides`) to that copy."""

from __future__ import annotations

import sys
from typing import Sequence

from stages.cli import stage_main
from vistune.config import DataCfg
from vistune.data import label_overrides
from vistune.data.sources import IngestReport, ingest
from vistune.io import write_json
from vistune.layout import Layout


def run(cfg: DataCfg, layout: Layout) -> IngestReport:
    report = ingest(cfg, layout.raw)
    facts = report.as_dict()
    if layout.label_overrides.is_file():
        done = label_overrides.apply(layout.label_overrides, layout.raw, report.classes)
        facts["label_overrides"] = done.as_dict()
        print(
            f"{layout.label_overrides.name}: {done.relabelled} relabelled, {done.excluded} excluded"
            + (f", {len(done.unmatched)} not found (e.g. {done.unmatched[:3]})" if done.unmatched else "")
        )
    write_json(layout.ingest_report, facts)
    print(f"source {cfg.source}: {report.counts} images, {len(report.classes)} classes, {len(report.skipped)} refused")
    for item in report.skipped[:5]:
        print(f"  refused {item['path']}: {item['reason']}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("ingest", argv, lambda p, layout: run(p.data, layout))


if __name__ == "__main__":
    sys.exit(main())
