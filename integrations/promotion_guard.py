"""The promotion guard: the one rule for making a version champion by hand.

A version the gate kept as challenger, or one whose gate metric is worse than the champion's,
becomes champion only when the user says so explicitly (force plus a reason); the refusal is one
line with the numbers. `integrations.registry.promote` and `review` apply it, so `vistune promote`,
the Prefect `promote` deployment and the approval form share it. Rollback does not: it restores a
state the history recorded, in one step.
"""

from __future__ import annotations

from integrations import tags as T

FORCE_HINT = 'to promote anyway say why: --force --reason "..." (Prefect: force=true and a reason)'
KEPT = (T.GATE_KEPT, "rejected")  # "rejected": the word stores written before the one vocabulary hold


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def refusal(
    version: str,
    gate_outcome: str | None,
    metric: str,
    value: float | None,
    champion: str | None,
    champion_value: float | None,
) -> str | None:
    """Why promoting `version` over `champion` needs force (one line with the numbers), or None.

    `gate_outcome` is the version's `vistune.gate` tag (None: never gated, e.g. a compress variant);
    `value` / `champion_value` the gate metric recorded on each (None: not recorded, not compared)."""
    if champion is not None and str(champion) == str(version):
        return None
    vs = (
        f"{metric} {_num(value)} vs champion v{champion} {_num(champion_value)}"
        if champion
        else f"{metric} {_num(value)}, no champion"
    )
    kept = gate_outcome in KEPT
    worse = champion is not None and value is not None and champion_value is not None and value < champion_value
    if not (kept or worse):
        return None
    why = (
        "the gate kept it as challenger" + (" and it is worse than the champion" if worse else "")
        if kept
        else "it is worse than the champion"
    )
    return f"refused to promote v{version}: {why} ({vs}); {FORCE_HINT}"


def forced_reason(reason: str, refused: str) -> str:
    """The history entry of a forced promotion: the user's reason and what it overrode."""
    overrode = refused.removeprefix("refused to promote ").split("; " + FORCE_HINT)[0]
    return f"forced: {reason.strip()} (overrode: {overrode})"


def check_force(force: bool, reason: str | None) -> None:
    """Force needs a reason in words; checked before anything changes."""
    if force and not (reason or "").strip():
        raise ValueError(
            '--force needs --reason "why this version must be champion" (Prefect: a reason), '
            "recorded in the alias history"
        )
