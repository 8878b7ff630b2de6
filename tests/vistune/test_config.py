import dataclasses
import typing
from pathlib import Path

import pytest
import yaml

from vistune import config
from vistune.config import (
    Params,
    StrategyName,
    TrainCfg,
    bounded,
    check_values,
    limits,
    load_params,
    parse_params,
    to_dict,
)
from vistune.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SECTIONS = typing.get_type_hints(Params)  # section name -> dataclass


def _fields():
    """(section, field, type hint) for every key of every section."""
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            yield section, f, hints[f.name]


def _choices(hint) -> tuple:
    """Allowed values of a Literal key (or of each item of a tuple of Literals); () otherwise."""
    if typing.get_origin(hint) is tuple:
        hint = typing.get_args(hint)[0]
    return typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else ()


ENUMERATED = [(s, f.name, _choices(h), typing.get_origin(h) is tuple) for s, f, h in _fields() if _choices(h)]
# (section, key, bound name, bound, is a tuple, is an int)
BOUNDS = [
    (s, f.name, k, v, typing.get_origin(h) is tuple, int in (h, *typing.get_args(h)))
    for s, f, h in _fields()
    for k, v in f.metadata.items()
    if k in ("ge", "gt", "le", "lt")
]


# keys whose every value is valid only beside another key's value (a cross-key check in the section)
CONTEXT = {("compress", "distill_strategy"): {"student_pretrained": "imagenet"}}


def _raw(section: str, key: str, value) -> dict:
    return {section: {**CONTEXT.get((section, key), {}), key: value}}


def _with_item(section: str, key: str, item) -> list:
    """The default tuple of `section.key` with its first item replaced."""
    default = getattr(getattr(Params(), section), key)
    return [item, *default[1:]]


def test_repo_params_parse_and_round_trip():
    p = load_params(REPO / "params.yaml")
    assert parse_params(to_dict(p)) == p


def test_dataclass_defaults_equal_committed_params_yaml():
    committed = yaml.safe_load((REPO / "params.yaml").read_text())
    defaults = to_dict(Params())
    diff = {
        f"{s}.{k}": (defaults[s].get(k, "<missing>"), committed.get(s, {}).get(k, "<missing>"))
        for s in defaults.keys() | committed.keys()
        for k in defaults.get(s, {}).keys() | committed.get(s, {}).keys()
        if defaults.get(s, {}).get(k, "<missing>") != committed.get(s, {}).get(k, "<missing>")
    }
    assert diff == {}, f"dataclass default vs params.yaml: {diff}"
    assert load_params(REPO / "params.yaml") == Params()


def test_unknown_key_is_an_error_listing_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lr_typo'\] in train; valid keys: \["):
        parse_params({"train": {"lr_typo": 1.0}})


def test_unknown_section_is_an_error():
    with pytest.raises(ConfigError, match="unknown key"):
        parse_params({"trian": {}})


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match="train.epochs must be int"):
        parse_params({"train": {"epochs": "five"}})


def test_int_accepted_for_float_and_tuples_coerced():
    p = parse_params({"train": {"lr": 1}, "augment": {"scale": [0.5, 1]}})
    assert p.train.lr == 1.0 and isinstance(p.train.lr, float)
    assert p.augment.scale == (0.5, 1.0)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


# ---- allowed values -------------------------------------------------------------------------


def test_the_enumerated_keys_are_the_expected_ones():
    assert {f"{s}.{k}" for s, k, _, _ in ENUMERATED} >= {
        "train.strategy",
        "train.class_weighting",
        "train.adversarial",
        "augment.auto_augment",
        "validate.on_duplicate",
        "register.gate_test",
        "compress.variants",
    }


@pytest.mark.parametrize("section, key, choices, is_tuple", ENUMERATED, ids=[f"{s}.{k}" for s, k, _, _ in ENUMERATED])
def test_enumerated_key_rejects_unknown_value_listing_valid_ones(section, key, choices, is_tuple):
    bad = ["bogus"] if is_tuple else "bogus"
    with pytest.raises(ConfigError) as err:
        parse_params(_raw(section, key, bad))
    msg = str(err.value)
    assert msg.startswith(f"params.yaml: {section}.{key}=") and "\n" not in msg
    assert msg.endswith(f"valid: {list(choices)}")
    for value in choices:  # each listed value is accepted
        assert getattr(getattr(parse_params(_raw(section, key, [value] if is_tuple else value)), section), key) == (
            (value,) if is_tuple else value
        )


def test_enumerated_values_match_the_core_registries():
    """The core dispatches on these names: its registries must name exactly the same ones."""
    from vistune.evaluate.significance import GATE_TESTS
    from vistune.train.adversarial import ATTACKS
    from vistune.train.finetune import list_strategies
    from vistune.train.steps import CLASS_WEIGHTING

    assert sorted(typing.get_args(StrategyName)) == list_strategies()
    assert typing.get_args(config.GateTest) == GATE_TESTS
    assert typing.get_args(config.AdversarialKind) == ATTACKS
    assert typing.get_args(config.ClassWeighting) == CLASS_WEIGHTING


def test_replace_and_direct_construction_are_checked_too():
    expect = r"^params.yaml: train.class_weighting='bogus': .*valid: \['none', 'loss', 'sampler'\]$"
    with pytest.raises(ConfigError, match=expect):
        dataclasses.replace(TrainCfg(), class_weighting="bogus")
    with pytest.raises(ConfigError, match=r"train.lr=0: value out of range; valid: 0 < lr < 10$"):
        TrainCfg(lr=0)


# ---- ranges ---------------------------------------------------------------------------------


def _outside(bound: str, limit, is_int: bool):
    return (
        {"ge": limit - 1, "gt": limit, "le": limit + 1, "lt": limit}[bound]
        if is_int or bound in ("gt", "lt")
        else {"ge": limit - 0.5, "le": limit + 0.5}[bound]
    )


@pytest.mark.parametrize(
    "section, key, bound, limit, is_tuple, is_int", BOUNDS, ids=[f"{s}.{k}-{b}{v}" for s, k, b, v, _, _ in BOUNDS]
)
def test_bounded_key_rejects_a_value_outside_and_accepts_its_edge(section, key, bound, limit, is_tuple, is_int):
    bad = _outside(bound, limit, is_int)
    value = _with_item(section, key, bad) if is_tuple else bad
    with pytest.raises(ConfigError) as err:
        parse_params(_raw(section, key, value))
    msg = str(err.value)
    assert msg.startswith(f"params.yaml: {section}.{key}=") and "out of range; valid: " in msg and "\n" not in msg
    symbol = {"ge": f"{limit} <= ", "gt": f"{limit} < ", "le": f" <= {limit}", "lt": f" < {limit}"}[bound]
    assert symbol in msg
    if bound in ("ge", "le"):  # the inclusive edge itself is allowed
        edge = _with_item(section, key, limit) if is_tuple else limit
        assert parse_params(_raw(section, key, edge))


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"train": {"lr": 0}}, "params.yaml: train.lr=0.0: value out of range; valid: 0 < lr < 10"),
        ({"train": {"epochs": 0}}, "params.yaml: train.epochs=0: value out of range; valid: 1 <= epochs <= 1000"),
        ({"augment": {"hflip": 1.5}}, "params.yaml: augment.hflip=1.5: value out of range; valid: 0 <= hflip <= 1"),
        (
            {"data": {"val_fraction": -0.1}},
            "params.yaml: data.val_fraction=-0.1: value out of range; valid: 0 <= val_fraction <= 1",
        ),
        (
            {"evaluate": {"robust_severities": [1, 6]}},
            "params.yaml: evaluate.robust_severities=[1, 6]: item 6 out of range; valid: 1 <= each item <= 5",
        ),
        (
            {"augment": {"scale": [1.0, 0.5]}},
            "params.yaml: augment.scale=[1.0, 0.5]: must be in increasing order; valid: [low, high] with low <= high, "
            "0 < each item <= 1",
        ),
        (
            {"compress": {"variants": ["onnx", "zip"]}},
            "params.yaml: compress.variants=['onnx', 'zip']: item 'zip' is not allowed; "
            "valid: ['onnx', 'onnx_int8', 'onnx_int8_dynamic', 'pruned', 'distilled']",
        ),
        (
            {"train": {"device": "gpu"}},
            r"params.yaml: train.device='gpu': value has the wrong form; "
            r"valid: auto|cpu|mps|cuda(:\d+)? (regular expression)",
        ),
    ],
)
def test_explicit_bad_values_give_one_line_with_the_valid_values(raw, message):
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    assert str(err.value) == message


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_device_forms_accepted(device):
    assert parse_params({"train": {"device": device}}).train.device == device


def test_a_bad_value_in_the_file_names_the_key(tmp_path):
    text = (REPO / "params.yaml").read_text().replace("  lr: 0.003\n", "  lr: 0\n")
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"^params.yaml: train.lr=0.0: value out of range"):
        load_params(tmp_path / "params.yaml")


def test_metadata_uses_only_known_keys_and_limits_gives_pydantic_keywords():
    known = {"ge", "gt", "le", "lt", "pattern", "increasing"}
    for section, f, _ in _fields():
        assert set(f.metadata) <= known, f"{section}.{f.name}: {f.metadata}"
    assert limits("train.lr") == {"gt": 0, "lt": 10}
    assert limits("augment.scale") == {"gt": 0, "le": 1}  # `increasing` is not a pydantic keyword
    assert limits("data.source") == {}


def test_a_field_without_metadata_has_no_bound_and_a_new_bounded_one_is_checked():
    @dataclasses.dataclass(frozen=True)
    class NewSection:
        count: int = -3
        name: str = "anything"
        share: float = bounded(0.5, ge=0, le=1)

    check_values(NewSection(count=-(10**9), name=""))  # no metadata: any value of the type
    with pytest.raises(ConfigError, match=r"NewSection.share=2: value out of range; valid: 0 <= share <= 1$"):
        check_values(NewSection(share=2))


@pytest.mark.parametrize("strategy", ["partial", "linear_probe"])
def test_a_frozen_layer_student_needs_pretrained_weights(strategy):
    with pytest.raises(
        ConfigError,
        match=rf"^params.yaml: compress.distill_strategy='{strategy}' keeps .*"
        r"student_pretrained is .none.*valid: ",
    ):
        parse_params({"compress": {"distill_strategy": strategy, "student_pretrained": "none"}})
    cfg = parse_params(
        {
            "compress": {
                "distill_strategy": strategy,
                "student_pretrained": "imagenet",
                "student": "timm:tf_efficientnet_lite0",
            }
        }
    ).compress
    assert (cfg.distill_strategy, cfg.student_pretrained) == (strategy, "imagenet")
    with pytest.raises(ConfigError, match=r"compress.student='tf_efficientnet_lite0': value has the wrong form"):
        parse_params({"compress": {"student": "tf_efficientnet_lite0"}})
