"""The Prefect form (PipelineParams) accepts exactly what params.yaml accepts, for every key it offers."""

from __future__ import annotations

import dataclasses
import shutil
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from flows.params import PARAM_KEYS, PipelineParams, apply_overrides
from vistune.config import Params, TrainCfg, load_params, parse_params
from vistune.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _metadata(dotted: str) -> dict:
    section, key = dotted.split(".")
    cls = typing.get_type_hints(Params)[section]
    return {f.name: f.metadata for f in dataclasses.fields(cls)}[key]


def _is_int(ui_name: str) -> bool:
    return int in typing.get_args(PipelineParams.model_fields[ui_name].annotation)


# (UI field, bound, limit) for every bound of every params key the form offers
BOUNDS = [
    (ui, b, v) for ui, key in PARAM_KEYS.items() for b, v in _metadata(key).items() if b in ("ge", "gt", "le", "lt")
]


def _outside(bound: str, limit, is_int: bool):
    step = 1 if is_int else 0.5
    return {"ge": limit - step, "gt": limit, "le": limit + step, "lt": limit}[bound]


def _in_params(ui_name: str, value) -> Params:
    section, key = PARAM_KEYS[ui_name].split(".")
    return parse_params({section: {key: value}})


def test_every_bounded_config_key_the_form_offers_is_covered():
    offered = {ui for ui, _, _ in BOUNDS}
    expected = {"epochs", "lr", "batch_size", "image_size", "hflip", "rotation", "salt_pepper", "min_improvement"}
    assert expected <= offered


@pytest.mark.parametrize("ui_name, bound, limit", BOUNDS, ids=[f"{u}-{b}{v}" for u, b, v in BOUNDS])
def test_form_and_params_yaml_reject_and_accept_the_same_values(ui_name, bound, limit):
    bad = _outside(bound, limit, _is_int(ui_name))
    with pytest.raises(ValidationError):
        PipelineParams(**{ui_name: bad})
    with pytest.raises(ConfigError, match=rf"{PARAM_KEYS[ui_name]}="):
        _in_params(ui_name, bad)
    if bound in ("ge", "le"):  # the edge is allowed by both
        assert PipelineParams(**{ui_name: limit}).overrides() == {PARAM_KEYS[ui_name]: limit}
        _in_params(ui_name, limit)


def test_strategy_choices_are_the_configs():
    choices = typing.get_args(typing.get_type_hints(TrainCfg)["strategy"])
    assert len(choices) >= 5
    for name in choices:
        assert PipelineParams(strategy=name).overrides() == {"train.strategy": name}
        _in_params("strategy", name)
    with pytest.raises(ValidationError):
        PipelineParams(strategy="fulll")
    with pytest.raises(ConfigError, match=r"train.strategy='fulll'"):
        _in_params("strategy", "fulll")
    schema = PipelineParams.model_json_schema()["properties"]["strategy"]
    assert {"enum": list(choices), "type": "string"} in schema["anyOf"]  # a dropdown in the Prefect UI


def test_form_schema_carries_the_config_bounds():
    lr = PipelineParams.model_json_schema()["properties"]["lr"]["anyOf"][0]
    meta = _metadata("train.lr")
    assert (lr["exclusiveMinimum"], lr["exclusiveMaximum"]) == (meta["gt"], meta["lt"])
    assert PipelineParams().overrides() == {}  # empty form keeps params.yaml


def test_apply_overrides_writes_good_values_and_refuses_bad_ones(tmp_path):
    params_file = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params_file)
    apply_overrides(params_file, PipelineParams(lr=0.01, strategy="lora").overrides())
    got = load_params(params_file)
    assert (got.train.lr, got.train.strategy) == (0.01, "lora")
    assert "# digits are not mirror-symmetric" in params_file.read_text()  # comments kept
    before = params_file.read_bytes()
    with pytest.raises(ConfigError, match=r"^params.yaml: train.lr=0.0: value out of range"):
        apply_overrides(params_file, {"train.lr": 0})
    assert params_file.read_bytes() == before
    assert yaml.safe_load(before)["train"]["lr"] == 0.01


def test_form_left_as_shown_is_no_override_and_changed_fields_are():
    current = {"epochs": 4, "lr": 0.003, "strategy": "full"}
    shown = {"epochs": 4, "lr": 0.001, "strategy": "full"}  # the form was pre-filled before params.yaml changed
    sent = PipelineParams(epochs=4, lr=0.001, strategy="lora")  # the UI sends every field
    assert sent.overrides(current, shown) == {"train.strategy": "lora"}
    assert PipelineParams(epochs=9).overrides(current, shown) == {"train.epochs": 9}


def test_deployments_prefill_params_yaml_and_describe_every_parameter():
    from flows.params import form_values
    from flows.serve import PARAMS, deployments
    from vistune.models.backbones import list_backbones

    values = form_values(PARAMS)
    committed = load_params(PARAMS)
    assert (values["epochs"], values["lr"], values["strategy"], values["model"]) == (
        committed.train.epochs,
        committed.train.lr,
        committed.train.strategy,
        committed.train.model,
    )
    by_name = {d.name: d for d in deployments()}
    form = by_name["train-pipeline"]
    assert form.parameters == {"params": values}
    schema = form._parameter_openapi_schema.model_dump()
    props = schema["definitions"]["PipelineParams"]["properties"]
    for name, prop in props.items():  # a plain typed input (no "None" type picker) showing params.yaml
        assert "anyOf" not in prop and prop["default"] == values[name] and prop["description"], name
    assert props["epochs"]["type"] == "integer" and props["epochs"]["minimum"] == 1
    assert props["strategy"]["enum"] == list(typing.get_args(typing.get_type_hints(TrainCfg)["strategy"]))
    assert set(props["model"]["enum"]) >= {b for b in list_backbones() if "<" not in b} | {values["model"]}
    assert schema["properties"]["workspace"]["enum"] == ["shared", "isolated"]
    assert by_name["retrain"].parameters == {}  # the schedule always trains on the workspace's params.yaml
    assert by_name["validate-only"].parameters == {"data_source": values["data_source"]}
    for dep in by_name.values():
        for name, prop in dep._parameter_openapi_schema.model_dump()["properties"].items():
            assert prop.get("description"), f"{dep.name}: parameter {name} has no description"
    version = by_name["promote"]._parameter_openapi_schema.model_dump()["properties"]["version"]
    assert version["type"] == "integer"  # `--param version=2` arrives as an int


def _apply_in_a_flow(params: PipelineParams, repo: Path) -> dict:
    from prefect import flow

    from flows.pipeline import apply_params

    @flow(name="apply-params-test")
    def run() -> dict:
        return apply_params(params, str(repo), fit_recipe=True)

    return run()


def test_a_run_that_sets_only_the_data_source_fits_the_recipe_like_init(harness, tmp_path: Path):
    """The Prefect form with only `data_source` changed writes the same params.yaml as `vistune init`."""
    from app import cli
    from tests.app.test_init import make_photos

    photos = make_photos(tmp_path / "photos", {"train": 6, "val": 3})
    by_flow, by_cli = tmp_path / "flow", tmp_path / "cli"
    for d in (by_flow, by_cli):
        d.mkdir()
        shutil.copy(REPO / "params.yaml", d / "params.yaml")
    overrides = _apply_in_a_flow(PipelineParams(data_source=str(photos)), by_flow)
    assert cli.main(["init", str(photos), "--params", str(by_cli / "params.yaml")]) == 0
    assert (by_flow / "params.yaml").read_text() == (by_cli / "params.yaml").read_text()
    written = load_params(by_flow / "params.yaml")
    assert overrides["train.strategy"] == written.train.strategy == "linear_probe"  # 18 photos: head only
    assert overrides["augment.hflip"] == written.augment.hflip == 0.5 and written.augment.salt_pepper == 0
    assert (by_flow / overrides["data.source"]).resolve() == photos.resolve()  # relative to params.yaml


def test_a_run_that_sets_more_than_the_source_applies_exactly_those(harness, tmp_path: Path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    before = load_params(tmp_path / "params.yaml")
    overrides = _apply_in_a_flow(PipelineParams(data_source="sklearn:digits", epochs=2), tmp_path)
    assert overrides == {"train.epochs": 2}  # the source equals params.yaml's: not a change
    after = load_params(tmp_path / "params.yaml")
    assert after.train.epochs == 2 and after.augment == before.augment and after.train.model == before.train.model


def test_form_descriptions_state_bounds_and_keep_placeholder_text():
    import re

    from flows.params import PipelineParams, bounds_text, ui_text

    assert bounds_text({"ge": 1, "le": 1000}) == "1 ≤ value ≤ 1000"
    assert bounds_text({"gt": 0, "lt": 10}) == "0 < value < 10"
    assert bounds_text({}) == ""
    assert ui_text("torchvision:<Dataset> or timm:<name>") == "torchvision:‹Dataset› or timm:‹name›"
    props = PipelineParams.model_json_schema()["properties"]
    assert props["epochs"]["description"].endswith("(`train.epochs`; 1 ≤ value ≤ 1000)")
    assert not any(re.search(r"<[^<>\s]+>", p.get("description", "")) for p in props.values())  # no HTML-like tag
