"""vistune's Prefect events: `vistune.<subject>.<what happened>`, about one model (docs/continuous-training.md).

- `vistune.champion.changed`: `champion` moved (gate, approval, promote, rollback).
- `vistune.data.drifted`: validate found the data unlike the champion's training data.
- `vistune.data.arrived`: a watched folder holds labelled images the champion never trained on.

Every event's resource is the model, `vistune.model.<name>`, with the label `vistune.emitter` (the
flow or command that sent it), which a deployment trigger can match: train-pipeline's own drift
result is `vistune.emitter: train-pipeline` and does not start a retrain of itself. Events go to
the Prefect server this process reports to (`PREFECT_API_URL`); without one nothing is sent, and
sending never fails the caller (an alias move or a run is not undone by a lost event).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from integrations.registry import ChampionChange, on_champion_change

__all__ = ["ChampionChange", "champion_changed", "data_arrived", "data_drifted", "emit", "install"]

CHAMPION_CHANGED = "vistune.champion.changed"
DATA_DRIFTED = "vistune.data.drifted"
DATA_ARRIVED = "vistune.data.arrived"
EVENTS = (CHAMPION_CHANGED, DATA_DRIFTED, DATA_ARRIVED)
MAX_LISTED = 20  # file names listed in a payload; the count is always complete
_log = logging.getLogger("vistune.events")


EMITTER_LABEL = "vistune.emitter"  # which flow sent an event (a retrain's own drift starts no retrain)


def resource_id(model: str) -> str:
    """The Prefect resource every event of a registered model is about."""
    return f"vistune.model.{model}"


def model_resource(model: str, emitter: str) -> dict[str, str]:
    return {"prefect.resource.id": resource_id(model), "prefect.resource.name": model, EMITTER_LABEL: emitter}


def configured() -> str:
    """The Prefect API events go to (`PREFECT_API_URL`), or "" when none is configured."""
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value() or "")


def emit(event: str, model: str, emitter: str, payload: dict):
    """Send one event; returns it, or None when no Prefect server is configured or sending failed."""
    from prefect.events import emit_event

    if not configured():
        _log.debug("no PREFECT_API_URL: %s not sent", event)
        return None
    try:
        return emit_event(event, resource=model_resource(model, emitter), payload=payload)
    except Exception as exc:  # noqa: BLE001 - an event is a notice: losing one must not fail the work
        _log.warning("could not send %s: %s", event, exc)
        return None


def flush(timeout_s: float = 10) -> bool:
    """Wait for queued events to reach the server (a short-lived command, e.g. `vistune promote`);
    False when some were still on their way after `timeout_s`."""
    from prefect.events.worker import EventsWorker

    _, pending = EventsWorker.drain_all(timeout=timeout_s)
    return not pending


def champion_changed(change: ChampionChange, emitter: str = "vistune") -> None:
    emit(
        CHAMPION_CHANGED,
        change.model,
        emitter,
        {
            "model": change.model,
            "old_version": change.old,
            "new_version": change.new,
            "action": change.action,
            "reason": change.reason,
            "actor": change.actor,
            "forced": change.action == "override",  # promoted past the promotion guard, with a reason
            "summary": f"{change.model} champion v{change.old or '-'} -> v{change.new} ({change.action}: {change.reason})",
        },
    )


def _emitter() -> str:
    """The flow this process is running now (its name), else "vistune" (the `vistune` command)."""
    from prefect.runtime import flow_run

    return str(flow_run.flow_name or "vistune")


def _on_change(change: ChampionChange) -> None:
    champion_changed(change, _emitter())


def install() -> None:
    """Emit `vistune.champion.changed` for every champion move this process makes from now on
    (one listener per process however often it is called; the emitter is the flow running then)."""
    on_champion_change(_on_change)


def fired_tests(drift: dict) -> list[dict]:
    """The tests of a flat drift result (drift.json) whose Bonferroni-adjusted p is below the threshold."""
    names = [k[:-2] for k in drift if k.endswith("_p") and isinstance(drift[k], (int, float))]
    threshold = float(drift.get("threshold") or 0.0)
    out = []
    for name in names:
        adjusted = min(1.0, len(names) * float(drift[f"{name}_p"]))
        score = -math.log10(adjusted) if adjusted > 0 else math.inf
        if score > threshold:
            out.append({"test": name, "p": drift[f"{name}_p"], "effect": drift.get(f"{name}_effect")})
    return out


def data_drifted(model: str, drift: dict, manifest: Path, repo: str, emitter: str):
    """`vistune.data.drifted` when `drift` (validate's drift.json) says drifted; None otherwise."""
    if drift.get("status") != "compared" or not drift.get("drifted"):
        return None
    return emit(
        DATA_DRIFTED,
        model,
        emitter,
        {
            "model": model,
            "drift_score": drift.get("drift_score"),
            "threshold": drift.get("threshold"),
            "p_value": drift.get("p_value"),
            "reference": drift.get("reference"),
            "reason": drift.get("reason"),
            "tests_fired": fired_tests(drift),
            "n_new": drift.get("n_new"),
            "manifest": str(manifest),
            "repo": repo,
            "summary": f"data drifted from {drift.get('reference')}: score {drift.get('drift_score')} > "
            f"{drift.get('threshold')} ({drift.get('reason')})",
        },
    )


def data_arrived(model: str, champion: str, arrivals, repo: str, emitter: str = "watch"):
    """`vistune.data.arrived`: `arrivals` (vistune.data.arrivals.Arrivals) has files champion v`champion` never saw."""
    return emit(
        DATA_ARRIVED,
        model,
        emitter,
        {
            "model": model,
            "champion_version": champion,
            "source": arrivals.folder,
            "n_new": arrivals.n_new,
            "n_files": arrivals.n_files,
            "per_class": arrivals.per_class,
            "examples": arrivals.new[:MAX_LISTED],
            "repo": repo,
            "summary": f"{arrivals.n_new} labelled file(s) in {arrivals.folder} that {model} v{champion} never trained on",
        },
    )
