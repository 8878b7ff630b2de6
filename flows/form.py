"""The Prefect UI's run form, pre-filled: a deployment's `params` default to params.yaml as it is
when the deployment is made, as plain typed inputs (bounds, dropdowns for strategy and backbone).

A run started from that form sends every field; `form_baseline()` gives the flow the values the
form was pre-filled with, so a field the user left alone is not an override and the run uses the
workspace's params.yaml for it (`PipelineParams.overrides`), even if the file changed since.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.deployments.runner import RunnerDeployment
from prefect.utilities.callables import ParameterSchema

from flows.params import PARAM_KEYS, backbone_choices, form_values, prefill_schema


def prefill(deployment: RunnerDeployment, params_file: Path, field: str = "params") -> RunnerDeployment:
    """Pre-fill `deployment`'s form from `params_file`: `field` is the flow's PipelineParams parameter,
    or a single params.yaml-backed parameter of the same UI name (validate-only's `data_source`)."""
    values = form_values(params_file)
    schema = deployment._parameter_openapi_schema.model_dump()  # no public setter in Prefect 3.8
    if field == "params":
        schema = prefill_schema(schema, values, backbone_choices(values.get("model")))
        default: Any = values
    else:
        prop = schema["properties"][field]
        typed = [s for s in prop.pop("anyOf", []) if s.get("type") != "null"]
        prop.update(typed[0] if len(typed) == 1 else {})
        default = prop["default"] = values[field]
    deployment._parameter_openapi_schema = ParameterSchema(**schema)
    deployment.parameters = {**(deployment.parameters or {}), field: default}
    return deployment


def form_baseline() -> dict[str, Any]:
    """The values this run's deployment pre-filled its form with (UI name -> value: its default
    `params`, and params.yaml-backed top-level parameters such as `data_source`); {} when the run did
    not come from a deployment."""
    from prefect.runtime import deployment

    if not deployment.id:
        return {}
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        defaults = client.read_deployment(deployment.id).parameters or {}
    base = dict(defaults["params"]) if isinstance(defaults.get("params"), dict) else {}
    return base | {k: v for k, v in defaults.items() if k in PARAM_KEYS}
