"""prefect.yaml (`prefect deploy --all`) carries the same retrain triggers as `python -m flows.serve`."""

from __future__ import annotations

import yaml

from tests.conftest import REPO


def test_prefect_yaml_triggers_match_flows_triggers():
    from prefect.events import DeploymentEventTrigger

    from flows.triggers import retrain_triggers
    from vistune.config import load_params

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    by_name = {d["name"]: d for d in spec["deployments"]}
    assert by_name["train-pipeline"]["entrypoint"] == "flows/pipeline.py:train_pipeline"
    assert by_name["watch"]["entrypoint"] == "flows/watch.py:watch_flow"
    from_yaml = [
        DeploymentEventTrigger.model_validate(t).model_dump(mode="json") for t in by_name["train-pipeline"]["triggers"]
    ]
    model = load_params(REPO / "params.yaml").register.model_name
    assert from_yaml == [t.model_dump(mode="json") for t in retrain_triggers(model)]
