"""params.yaml `loop`: a retrain trigger switched off there is left out of the served train-pipeline
deployment (no automation is registered); the deploy-time flags create the rest switched off."""

from __future__ import annotations

import pytest

from tests.conftest import tiny_params_dict, write_params
from vistune.config import parse_params
from vistune.errors import ConfigError


def _train_pipeline(params_file, **flags):
    from flows.serve import deployments

    return next(d for d in deployments(params=params_file, **flags) if d.name == "train-pipeline")


def _triggers(deployment) -> list[tuple[str, bool, int]]:
    return [(next(iter(t.expect)), t.enabled, int(t.within.total_seconds())) for t in deployment.triggers]


def test_loop_switches_leave_triggers_out_and_flags_create_them_off(tmp_path):
    on = write_params(tmp_path / "on.yaml", tiny_params_dict(loop={"debounce_s": 90}))
    assert _triggers(_train_pipeline(on)) == [("vistune.data.arrived", True, 90), ("vistune.data.drifted", True, 90)]
    assert _triggers(_train_pipeline(on, retrain_on_drift=False, debounce_s=30)) == [
        ("vistune.data.arrived", True, 30),
        ("vistune.data.drifted", False, 30),  # registered, switched off: the UI can turn it on
    ]
    no_arrival = write_params(tmp_path / "a.yaml", tiny_params_dict(loop={"retrain_on_arrival": False}))
    assert _triggers(_train_pipeline(no_arrival)) == [("vistune.data.drifted", True, 600)]
    none = write_params(
        tmp_path / "n.yaml", tiny_params_dict(loop={"retrain_on_arrival": False, "retrain_on_drift": False})
    )
    assert _train_pipeline(none).triggers == []


@pytest.mark.parametrize(
    "loop, message",
    [
        ({"retrain_on_drift": "no"}, "params.yaml: loop.retrain_on_drift must be true or false, got 'no'"),
        ({"debounce_s": 0}, "params.yaml: loop.debounce_s=0: value out of range; valid: 1 <= debounce_s"),
        ({"retrain_on_data": True}, "params.yaml: unknown key(s) ['retrain_on_data'] in loop; valid keys: "),
    ],
)
def test_loop_section_is_checked(loop, message):
    raw = tiny_params_dict()
    raw["loop"] = {**raw["loop"], **loop}
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    assert str(err.value).startswith(message), str(err.value)
