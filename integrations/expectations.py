"""Great Expectations over the image manifest: the rules, the run, and the Data Docs.

Row-level expectations are run with COMPLETE result format so each failing row comes back by
index; `validate` turns those indices into quarantine reasons. GX state lives in an ephemeral
context whose only persistent output is the Data Docs site under the report directory.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vistune.config import ValidateCfg

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

SUITE_NAME = "vistune_image_manifest"
SITE_NAME = "vistune_validation"


@dataclass
class ExpectationOutcome:
    expectation: str
    column: str
    success: bool
    reason: str  # why a failing row is bad, in words a user reads in quarantine.csv
    unexpected_index: list[int] = field(default_factory=list)


@dataclass
class SuiteOutcome:
    success: bool
    outcomes: list[ExpectationOutcome]
    docs_index: Path | None


def _row_expectations(cfg: ValidateCfg) -> list[tuple[object, str]]:
    import great_expectations.expectations as gxe

    return [
        (gxe.ExpectColumnValuesToBeInSet(column="decodable", value_set=[True]), "{error}"),
        (gxe.ExpectColumnValuesToBeInSet(column="format", value_set=list(cfg.allowed_formats)),
         "format {format} not allowed (allowed: " + ", ".join(cfg.allowed_formats) + ")"),
        (gxe.ExpectColumnValuesToBeInSet(column="ext_ok", value_set=[True]),
         "file extension does not match its content ({format}); rename the file"),
        (gxe.ExpectColumnValuesToBeBetween(column="width", min_value=cfg.min_side, max_value=cfg.max_side),
         f"width {{width}} outside [{cfg.min_side}, {cfg.max_side}]"),
        (gxe.ExpectColumnValuesToBeBetween(column="height", min_value=cfg.min_side, max_value=cfg.max_side),
         f"height {{height}} outside [{cfg.min_side}, {cfg.max_side}]"),
        (gxe.ExpectColumnValuesToNotBeNull(column="label"), "no label"),
    ]


def _context(docs_dir: Path | None):
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    ctx = gx.get_context(mode="ephemeral")
    try:
        ctx.variables.progress_bars = {"globally": False}
    except Exception:  # older configs without the setting
        pass
    if docs_dir is not None:
        ctx.add_data_docs_site(
            site_name=SITE_NAME,
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    return ctx


def run_suite(manifest: pd.DataFrame, cfg: ValidateCfg, docs_dir: Path | None = None) -> SuiteOutcome:
    """Validate the manifest; return per-expectation outcomes with failing row indices."""
    import great_expectations as gx

    df = manifest.reset_index(drop=True)
    ctx = _context(docs_dir)
    source = ctx.data_sources.add_pandas("manifest_source")
    asset = source.add_dataframe_asset(name="image_manifest")
    batch_def = asset.add_batch_definition_whole_dataframe("all_images")
    suite = ctx.suites.add(gx.ExpectationSuite(name=SUITE_NAME))
    rules = _row_expectations(cfg)
    for exp, _ in rules:
        suite.add_expectation(exp)
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name="manifest_validation", data=batch_def, suite=suite))
    actions = [gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=[SITE_NAME])] if docs_dir else []
    checkpoint = ctx.checkpoints.add(
        gx.Checkpoint(
            name="manifest_checkpoint", validation_definitions=[vd], actions=actions,
            result_format={"result_format": "COMPLETE"},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": df})
    vres = next(iter(result.run_results.values()))
    by_type: dict[tuple[str, str], object] = {}
    for r in vres.results:
        cfg_ = r.expectation_config
        by_type[(cfg_.type, cfg_.kwargs.get("column", ""))] = r
    outcomes = []
    for exp, reason in rules:
        key = (exp.expectation_type, getattr(exp, "column", ""))
        r = by_type[key]
        idx = [int(i) for i in (r.result or {}).get("unexpected_index_list") or []]
        outcomes.append(ExpectationOutcome(key[0], key[1], bool(r.success), reason, idx))
    docs_index = None
    if docs_dir is not None:
        candidates = sorted(docs_dir.glob("index.html"))
        docs_index = candidates[0] if candidates else None
    return SuiteOutcome(success=bool(vres.success), outcomes=outcomes, docs_index=docs_index)
