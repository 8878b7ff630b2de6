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
    code: str = ""  # short name of the failure kind: a quarantine.csv column and a summary metric


@dataclass
class SuiteOutcome:
    success: bool
    outcomes: list[ExpectationOutcome]
    docs_index: Path | None


@dataclass(frozen=True)
class Rule:
    """One row-level expectation, the failure code it stands for, and the reason template."""

    code: str
    expectation: object
    reason: str  # str.format over the manifest row


def row_rules(cfg: ValidateCfg) -> list[Rule]:
    """The row-level suite, most fundamental first: a row is quarantined for its first failure.

    Every rule runs whatever the policy: `validate` decides which codes only warn (an extension
    mismatch under `on_extension_mismatch: warn`, duplicates under `on_duplicate: warn`), so Data
    Docs always show them."""
    import great_expectations.expectations as gxe

    in_set = gxe.ExpectColumnValuesToBeInSet
    between = gxe.ExpectColumnValuesToBeBetween
    is_null = gxe.ExpectColumnValuesToBeNull
    return [
        Rule(
            "missing",
            in_set(column="exists", value_set=[True]),
            "file disappeared while validating; rerun once the source stops changing",
        ),
        Rule(
            "unreadable",
            in_set(column="readable", value_set=[True]),
            "unreadable file ({error}); make it readable (chmod a+r) or remove it",
        ),
        Rule(
            "unsafe_name",
            in_set(column="name_ok", value_set=[True]),
            "unsafe file name (not UTF-8 or contains '..'); rename it",
        ),
        Rule(
            "outside_root",
            in_set(column="within_root", value_set=[True]),
            "symlink points outside the data root; copy the file in instead",
        ),
        Rule("empty", between(column="bytes", min_value=1), "empty file (0 bytes); remove it"),
        Rule("not_image", in_set(column="identified", value_set=[True]), "{error}; remove or replace the file"),
        Rule(
            "bomb",
            between(column="pixels", max_value=cfg.max_pixels),
            f"decompression bomb: {{pixels}} pixels > validate.max_pixels={cfg.max_pixels} (not decoded)",
        ),
        Rule("corrupt", in_set(column="corrupt", value_set=[False]), "{error}; re-export or re-download the file"),
        Rule(
            "undecodable",
            in_set(column="decodable", value_set=[True]),
            "{error}; the file is truncated or corrupt, re-export it",
        ),
        *(
            [
                Rule(
                    "format",
                    in_set(column="format", value_set=list(cfg.allowed_formats)),
                    "format {format} not allowed (validate.allowed_formats: " + ", ".join(cfg.allowed_formats) + ")",
                )
            ]
            if cfg.allowed_formats
            else []
        ),  # () = every format Pillow decodes
        Rule(
            "extension",
            in_set(column="extension_mismatch", value_set=[False]),
            "file extension does not match its content ({format}); rename the file",
        ),
        Rule(
            "mode",
            in_set(column="mode", value_set=list(cfg.allowed_modes)),
            "mode {mode} not allowed (validate.allowed_modes)",
        ),
        Rule(
            "size",
            between(column="width", min_value=cfg.min_side, max_value=cfg.max_side),
            f"width {{width}} outside [{cfg.min_side}, {cfg.max_side}] (validate.min_side/max_side)",
        ),
        Rule(
            "size",
            between(column="height", min_value=cfg.min_side, max_value=cfg.max_side),
            f"height {{height}} outside [{cfg.min_side}, {cfg.max_side}] (validate.min_side/max_side)",
        ),
        Rule(
            "aspect",
            between(column="aspect", min_value=cfg.min_aspect, max_value=cfg.max_aspect),
            f"aspect ratio {{aspect}} outside [{cfg.min_aspect}, {cfg.max_aspect}] (validate.min_aspect/max_aspect)",
        ),
        Rule("no_label", gxe.ExpectColumnValuesToNotBeNull(column="label"), "no label"),
        Rule("leakage", is_null(column="leak_of"), "same image as {leak_of} in another split (train/val/test leakage)"),
        Rule("duplicate", is_null(column="exact_dup_of"), "exact duplicate of {exact_dup_of}"),
        Rule("near_duplicate", is_null(column="near_dup_of"), "near duplicate of {near_dup_of} (pHash)"),
    ]


# every code validate may report, including refusals made at ingest; summary keys are built from it
QUARANTINE_CODES = (
    "missing",
    "unreadable",
    "unsafe_name",
    "outside_root",
    "empty",
    "not_image",
    "bomb",
    "corrupt",
    "undecodable",
    "format",
    "extension",
    "mode",
    "size",
    "aspect",
    "no_label",
    "leakage",
    "duplicate",
    "near_duplicate",
    "label_issue",
    "lookalike",
    "refused",
)


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
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir.resolve()),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    return ctx


def run_suite(manifest: pd.DataFrame, cfg: ValidateCfg, docs_dir: Path | None = None) -> SuiteOutcome:
    """Validate the manifest; return per-expectation outcomes with failing row indices."""
    import great_expectations as gx

    default_index = manifest.index.equals(pd.RangeIndex(len(manifest)))
    df = manifest if default_index else manifest.reset_index(drop=True)  # no copy of a large manifest
    ctx = _context(docs_dir)
    source = ctx.data_sources.add_pandas("manifest_source")
    asset = source.add_dataframe_asset(name="image_manifest")
    batch_def = asset.add_batch_definition_whole_dataframe("all_images")
    suite = ctx.suites.add(gx.ExpectationSuite(name=SUITE_NAME))
    rules = row_rules(cfg)
    for rule in rules:
        suite.add_expectation(rule.expectation)
    vd = ctx.validation_definitions.add(
        gx.ValidationDefinition(name="manifest_validation", data=batch_def, suite=suite)
    )
    actions = [gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=[SITE_NAME])] if docs_dir else []
    checkpoint = ctx.checkpoints.add(
        gx.Checkpoint(
            name="manifest_checkpoint",
            validation_definitions=[vd],
            actions=actions,
            result_format={"result_format": "COMPLETE"},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": df})
    vres = next(iter(result.run_results.values()))
    by_key = {(r.expectation_config.type, r.expectation_config.kwargs.get("column", "")): r for r in vres.results}
    outcomes = []
    for rule in rules:
        key = (rule.expectation.expectation_type, getattr(rule.expectation, "column", ""))
        r = by_key[key]
        if r.exception_info and r.exception_info.get("raised_exception"):
            raise RuntimeError(f"expectation {key} raised: {r.exception_info.get('exception_message')}")
        idx = [int(i) for i in (r.result or {}).get("unexpected_index_list") or []]
        outcomes.append(ExpectationOutcome(key[0], key[1], bool(r.success), rule.reason, idx, rule.code))
    docs_index = None
    if docs_dir is not None:
        candidates = sorted(docs_dir.glob("index.html"))
        docs_index = candidates[0] if candidates else None
    return SuiteOutcome(success=bool(vres.success), outcomes=outcomes, docs_index=docs_index)
