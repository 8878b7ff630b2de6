"""train-pipeline's deployment triggers: a retrain on `vistune.data.arrived` and on `vistune.data.drifted`.

Debounced the Prefect way: a reactive trigger with threshold 1 fires on the first event of a burst,
then ignores the same event for `within_s` (one retrain per burst). No second retrain runs beside
one: train-pipeline's deployment concurrency limit is 1 (a run triggered meanwhile waits its turn,
as a run started by hand does). Drift only counts when found outside train-pipeline (by
`validate-only` or `watch`): a retrain's own validate must not start the next retrain.
Switched off in params.yaml (`loop.retrain_on_arrival` / `loop.retrain_on_drift: false`), a trigger is
not registered at all (`deployment_triggers`). Otherwise each is an automation the Prefect UI can switch
off; `python -m flows.serve --no-retrain-on-drift` / `--no-retrain-on-arrival` (or prefect.yaml
`enabled: false`) create it switched off, so the UI can turn it on.
"""

from __future__ import annotations

from datetime import timedelta

from prefect.events import DeploymentEventTrigger

from flows.events import DATA_ARRIVED, DATA_DRIFTED, EMITTER_LABEL, resource_id
from vistune.config import Params

DEBOUNCE_S = 600
DRIFT_EMITTERS = ["validate-only", "watch"]  # not train-pipeline: its drift result is about the run itself
# train-pipeline's `trigger` parameter, rendered from the event as text (a bare "{{ x }}" would be sent
# through `tojson`, which fails on the event's UUID and datetime): checked by `check_trigger`, named in the report
TRIGGER_PARAMETER = {
    "trigger": {
        k: {"__prefect_kind": "jinja", "template": f"{{{{ event.{v} }}}}"}
        for k, v in {
            "event": "event",
            "id": "id",
            "occurred": "occurred",
            "model": "payload.model",
            "summary": "payload.summary",
            "n_new": "payload.n_new",
            "drift_score": "payload.drift_score",
            "threshold": "payload.threshold",
        }.items()
    }
}


def retrain_triggers(
    model: str, on_arrival: bool = True, on_drift: bool = True, within_s: int = DEBOUNCE_S
) -> list[DeploymentEventTrigger]:
    """The triggers for `model` (created disabled when switched off, so the UI can turn them on)."""
    resource = resource_id(model)
    common = {
        "posture": "Reactive",
        "threshold": 1,
        "within": timedelta(seconds=within_s),
        "parameters": TRIGGER_PARAMETER,
    }
    return [
        DeploymentEventTrigger(
            name=f"retrain {model} on arrived data",
            enabled=on_arrival,
            expect={DATA_ARRIVED},
            match={"prefect.resource.id": resource},
            **common,
        ),
        DeploymentEventTrigger(
            name=f"retrain {model} on drift",
            enabled=on_drift,
            expect={DATA_DRIFTED},
            match={"prefect.resource.id": resource, EMITTER_LABEL: DRIFT_EMITTERS},
            **common,
        ),
    ]


def deployment_triggers(
    params: Params, on_arrival: bool = True, on_drift: bool = True, within_s: int | None = None
) -> list[DeploymentEventTrigger]:
    """train-pipeline's triggers for the repository's params: those params.yaml `loop` switches off are
    left out (no automation, no retrain); `on_*` False creates the others disabled; `within_s` None =
    `loop.debounce_s`."""
    loop = params.loop
    kept = {DATA_ARRIVED: loop.retrain_on_arrival, DATA_DRIFTED: loop.retrain_on_drift}
    triggers = retrain_triggers(params.register.model_name, on_arrival, on_drift, within_s or loop.debounce_s)
    return [t for t in triggers if all(kept[e] for e in t.expect)]


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def check_trigger(trigger: dict, model: str) -> str | None:
    """Why the event behind a triggered run must not start a retrain (malformed, another model, not
    drifted, nothing new), or None when it may. The run logs the reason and stops: no retrain."""
    event = trigger.get("event")
    if event not in (DATA_ARRIVED, DATA_DRIFTED):
        return f"event {event!r} is not one of {[DATA_ARRIVED, DATA_DRIFTED]}"
    if trigger.get("model") != model:
        return f"{event} names model {trigger.get('model')!r}, this repository trains {model!r}"
    if event == DATA_ARRIVED:
        n_new = _number(trigger.get("n_new"))
        return None if n_new is not None and n_new >= 1 else f"{event} has no positive n_new ({trigger.get('n_new')!r})"
    score, threshold = _number(trigger.get("drift_score")), _number(trigger.get("threshold"))
    if score is None or threshold is None:
        return f"{event} lacks a numeric drift_score/threshold ({trigger.get('drift_score')!r}, {trigger.get('threshold')!r})"
    return None if score > threshold else f"{event} drift_score {score} is not above its threshold {threshold}"


def describe(trigger: dict) -> str:
    """One line for the run's report: the event, its id (Prefect UI: Events) and what it said."""
    return f"{trigger.get('event')} (event {trigger.get('id')}, {trigger.get('occurred')}): {trigger.get('summary')}"
