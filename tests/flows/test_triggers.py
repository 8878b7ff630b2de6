"""The loop's events and triggers on a real `prefect server start` (temp PREFECT_HOME, free port):
a champion move sends `vistune.champion.changed`; a burst of `vistune.data.arrived` starts exactly one
train-pipeline run that names its event; events for another model, train-pipeline's own drift, a
switched-off trigger and one left out by params.yaml `loop` start none; a malformed event's run is
logged and ignored (no retrain)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from tests.conftest import tiny_params_dict, write_params
from tests.integrations.registry_helpers import register, write_params_file
from tests.prefect_harness import prefect_server_process, wait_for_triggers_service

pytestmark = pytest.mark.slow
MODEL = "vistune-classifier"
SWITCHED = "switched-classifier"  # a repository whose params.yaml switches the arrival trigger off


def _runs_of(client, deployment_id) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


def _events(client, name: str) -> list:
    from prefect.events.filters import EventFilter, EventNameFilter

    return client.read_events(EventFilter(event=EventNameFilter(name=[name])), limit=50).events


def _wait(what, fn, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while not (found := fn()):
        assert time.monotonic() < deadline, f"{what}: nothing after {timeout_s:.0f} s"
        time.sleep(0.5)
    return found


def _arrived(n_new, model: str = MODEL) -> dict:
    return {
        "model": model,
        "champion_version": "1",
        "source": "/data/new",
        "n_new": n_new,
        "n_files": 9,
        "summary": f"{n_new} labelled file(s) new to {model} v1",
    }


def test_events_start_one_debounced_retrain_and_bad_events_none(trained_tiny, mlflow_cfg, tmp_path):
    from prefect.client.orchestration import get_client

    from flows import events
    from flows.pipeline import train_pipeline
    from flows.serve import deployments
    from flows.triggers import retrain_triggers
    from flows.watch import watch_flow

    with prefect_server_process(tmp_path / "prefect"), get_client(sync_client=True) as client:
        events.install()  # the registry's one place: the gate's promotion below is sent
        assert register(trained_tiny, tmp_path / "lay", mlflow_cfg)["promoted"]
        on = train_pipeline.to_deployment(name="train-pipeline", triggers=retrain_triggers(MODEL, within_s=120))
        off = train_pipeline.to_deployment(
            name="train-pipeline-off",
            triggers=retrain_triggers(MODEL, on_arrival=False, on_drift=False, within_s=120),
        )
        switched = tmp_path / "switched.yaml"
        write_params(switched, tiny_params_dict(register={"model_name": SWITCHED}, loop={"retrain_on_arrival": False}))
        by_params = next(d for d in deployments(params=switched, debounce_s=120) if d.name == "train-pipeline")
        by_params.name = "train-pipeline-by-params"
        assert [next(iter(t.expect)) for t in by_params.triggers] == [events.DATA_DRIFTED]
        on_id, off_id, params_id = on.apply(), off.apply(), by_params.apply()
        wait_for_triggers_service(client)  # the three deployments' automations are live
        for n in (3, 4, 5):  # a burst: one retrain
            events.emit(events.DATA_ARRIVED, MODEL, "watch", _arrived(n))
        events.emit(events.DATA_ARRIVED, "someone-elses-model", "watch", _arrived(7, "someone-elses-model"))
        events.emit(events.DATA_ARRIVED, SWITCHED, "watch", _arrived(6, SWITCHED))  # its trigger is left out
        drift = {"model": SWITCHED, "drift_score": 9.0, "threshold": 2.0, "summary": "drift seen by watch"}
        events.emit(events.DATA_DRIFTED, SWITCHED, "watch", drift)  # its drift trigger stays: one run
        events.emit(
            events.DATA_DRIFTED,
            MODEL,
            "train-pipeline",  # a retrain's own drift: no new retrain
            {"model": MODEL, "drift_score": 9.0, "threshold": 2.0, "summary": "own drift"},
        )
        events.flush()

        runs = _wait("a triggered train-pipeline run", lambda: _runs_of(client, on_id), timeout_s=240)
        first_seen = time.monotonic()  # the rest of the burst gets >= 15 s from here to start more runs (below)
        trigger = runs[0].parameters["trigger"]
        # one of the burst's events (the events client sends them without an order guarantee)
        assert (trigger["event"], trigger["model"]) == (events.DATA_ARRIVED, MODEL) and str(trigger["n_new"]) in (
            "3",
            "4",
            "5",
        )
        assert trigger["id"] and "new to vistune-classifier v1" in trigger["summary"]
        _wait("the params-built deployment's drift run", lambda: _runs_of(client, params_id))
        assert client.read_automations_by_name(f"retrain {SWITCHED} on arrived data") == []
        assert len(client.read_automations_by_name(f"retrain {SWITCHED} on drift")) == 1

        changed = _events(client, events.CHAMPION_CHANGED)
        assert [(e.payload["new_version"], e.payload["action"], e.payload["old_version"]) for e in changed] == [
            ("1", "gate", None)
        ]
        assert changed[0].resource.id == f"vistune.model.{MODEL}"

        # the triggered run itself, given a malformed event (no n_new), logs it and trains nothing
        repo = tmp_path / "repo"
        repo.mkdir()
        write_params_file(repo / "params.yaml", mlflow_cfg)
        result = train_pipeline(repo=str(repo), trigger={**trigger, "n_new": ""})
        assert "no positive n_new" in result["ignored_trigger"] and "stages" not in result
        assert result["started_by"].startswith(f"{events.DATA_ARRIVED} (event {trigger['id']}")

        # watch: the champion's training images (renamed into <class>/<file>) plus two new ones
        manifest = pd.read_csv(trained_tiny.manifest, dtype={"label": str})
        source = tmp_path / "source"
        for row in manifest[manifest.split == "train"].itertuples():
            (source / row.label).mkdir(parents=True, exist_ok=True)
            shutil.copy(trained_tiny.raw / row.path, source / row.label / f"copy_{Path(row.path).name}")
        for i in range(2):
            Image.new("RGB", (16, 16), (90 * i, 200, 30)).save(source / "0" / f"new{i}.png")
        watched = watch_flow(source=str(source), repo=str(repo))
        assert (watched["arrived"], watched["n_new"], watched["champion_version"]) == (True, 2, "1")
        sent = _wait(
            "the watch's event",
            lambda: [e for e in _events(client, events.DATA_ARRIVED) if e.payload.get("source") == str(source)],
        )
        assert sent[0].resource["vistune.emitter"] == "watch" and sent[0].payload["examples"] == [
            "0/new0.png",
            "0/new1.png",
        ]
        # the waits overlap: >= 15 s after the first run for the rest of the burst, >= 10 s after the watch's event
        sent_seen = time.monotonic()
        time.sleep(max(10.0, first_seen + 15 - sent_seen))
        runs = _runs_of(client, on_id)
        assert len(runs) == 1, [r.parameters for r in runs]  # one retrain for the burst and the later watch event
        assert _runs_of(client, off_id) == []  # switched off: the same events start nothing
        # only the drift event: arrival is not registered at all
        by_drift = _runs_of(client, params_id)
        assert [(r.parameters["trigger"]["event"], r.parameters["trigger"]["model"]) for r in by_drift] == [
            (events.DATA_DRIFTED, SWITCHED)
        ]
