from pathlib import Path

import pytest

from vistune.config import load_params, parse_params, to_dict
from vistune.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_repo_params_parse_and_round_trip():
    p = load_params(REPO / "params.yaml")
    assert parse_params(to_dict(p)) == p


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
