"""Every MLflow tag key vistune writes, spelled once (runs, model versions, the registered model).

- A model version carries a short set, so its row in the MLflow registry stays one or two lines:
  `vistune.gate`, the gate metric (`vistune.test_macro_f1`), `vistune.card`, `vistune.model_sha256`
  and the `VERSION_LINEAGE` facts (git commit, data manifest hash); state tags appear only when set
  (`vistune.approval`, `vistune.rolled_back`, `vistune.archived`, variants). Everything else is on
  the run that logged it (`registry.version_facts` merges both): every lineage fact (one tag each,
  and the artifact `lineage/lineage.json`; `vistune lineage` prints them), the params/metrics
  digests, the gate's reason, failures, significance and the champion it compared with. Stores
  written before carry these on the version (`LINEAGE_JSON`, ...), still read.
- DVC hashes (`vistune.dvc.<stage>:<out>`): the md5 DVC records for each stage output.
- Identity (`vistune.model_sha256`, ...): what makes two registrations the same (idempotency).
- Gate and alias actions (`vistune.gate`, ...): set by `integrations.registry`; the gate's figures are
  `vistune.<metric>` (e.g. `vistune.test_macro_f1`).
- Alias history (`vistune.alias_history.<seq>`, on a registry-log run the registered model's one tag
  `vistune.alias_history` names): `integrations.history`.
- Compress variants (`vistune.variant`, ...): a sibling version built from a parent version's weights
  (`stages/compress.py`), registered by `register`, never given an alias automatically.
"""

from __future__ import annotations

PREFIX = "vistune."

LINEAGE = f"{PREFIX}lineage."
# the facts under LINEAGE (see integrations.lineage.facts)
LINEAGE_FACTS = (
    "git_commit",
    "git_dirty",
    "git_dirty_files",
    "params_md5",
    "params",
    "data_manifest_sha256",
    "label_overrides_sha256",
    "dvc_experiment",
    "prefect_flow_run_id",
    "prefect_flow_run_name",
    "prefect_flow_run_url",
    "python",
    "torch",
    "cpu_kernels",
    "cpu_threads",
)
DVC = f"{PREFIX}dvc."
LINEAGE_JSON = f"{PREFIX}lineage"  # read only: older versions' lineage as one JSON object (now on the run)
# the lineage facts a model version also carries as tags of their own (what a registry reader looks for)
VERSION_LINEAGE = ("git_commit", "data_manifest_sha256")

MODEL_SHA256 = f"{PREFIX}model_sha256"
PARAMS_SHA256 = f"{PREFIX}params_sha256"
METRICS_SHA256 = f"{PREFIX}metrics_sha256"

GATE = f"{PREFIX}gate"  # one of GATE_OUTCOMES
# the gate's outcome, one word set for the Prefect log, MLflow tags, `vistune status` and the model card
GATE_PROMOTED = "promoted"
GATE_KEPT = "kept as challenger"
GATE_PENDING = "waiting for approval"
GATE_OUTCOMES = (GATE_PROMOTED, GATE_KEPT, GATE_PENDING)


def gate_outcome(promoted: bool | None, pending: bool | None) -> str:
    """The one word for a gate decision, wherever it is shown."""
    return GATE_PROMOTED if promoted else GATE_PENDING if pending else GATE_KEPT


GATE_FAILURES = f"{PREFIX}gate_failures"
GATE_SIGNIFICANCE = f"{PREFIX}gate_significance"
DECISION_REASON = f"{PREFIX}decision_reason"
PREVIOUS_CHAMPION = f"{PREFIX}previous_champion"
# the last action and its time are the description's first line, not tags (a shorter row in the MLflow UI)
ROLLED_BACK = f"{PREFIX}rolled_back"
ARCHIVED = f"{PREFIX}archived"
APPROVAL = (
    f"{PREFIX}approval"  # pending | approved | rejected | timed_out | stale | refused (register.approval: required)
)
CARD = f"{PREFIX}card"  # runs:/<run>/card/model_card.html, the version's model card (app.card)
CARD_ARTIFACT = "card/model_card.html"  # the card's path inside its run

ALIAS_HISTORY = f"{PREFIX}alias_history."  # + <seq>: one entry, a tag on the model's registry-log run
ALIAS_HISTORY_RUN = f"{PREFIX}alias_history"  # on the registered model: runs:/<registry-log run id>
REGISTRY_LOG_FOR = f"{PREFIX}registry_log_for"  # on a registry-log run: the registered model it logs

VARIANT = f"{PREFIX}variant"  # on a variant's version: onnx | onnx_int8 | pruned | distilled ...
VARIANT_OF = f"{PREFIX}variant_of"  # on a variant's version: the parent version it was built from
VARIANTS = f"{PREFIX}variants"  # on the parent: "onnx_int8=v5, onnx=v6" (the model card's variant list)


def lineage(fact: str) -> str:
    """`vistune.lineage.<fact>`; an unknown fact is a programming error, caught here."""
    if fact not in LINEAGE_FACTS:
        raise KeyError(f"unknown lineage fact {fact!r}; valid: {list(LINEAGE_FACTS)}")
    return f"{LINEAGE}{fact}"


def dvc_out(stage: str, path: str) -> str:
    """`vistune.dvc.<stage>:<out path>`: the md5 of that stage output."""
    return f"{DVC}{stage}:{path}"


def metric(key: str) -> str:
    """`vistune.<metric>`: a figure the gate judged, kept on the version."""
    return f"{PREFIX}{key}"
