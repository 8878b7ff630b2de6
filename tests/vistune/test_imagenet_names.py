"""Folder names matched to ImageNet classes (timm's synset lemmas): plural folders, spaced or
underscored names, and no guess where a name is ambiguous or absent."""

from __future__ import annotations

import pytest

from vistune.config import ConfigError, TrainCfg
from vistune.models.imagenet_names import imagenet_index, imagenet_rows


@pytest.mark.parametrize(
    "name, index",
    [
        ("ants", 310),
        ("bees", 309),
        ("Bee", 309),
        ("golden_retriever", 207),
        ("golden-retrievers", 207),
        ("daisies", 985),
        ("tench", 0),
    ],
)
def test_names_match_their_imagenet_class(name, index):
    assert imagenet_index(name) == index


@pytest.mark.parametrize("name", ["crane", "cranes", "3", "widgets", ""])
def test_ambiguous_or_unknown_names_match_nothing(name):
    assert imagenet_index(name) is None


def test_rows_need_every_class_and_distinct_rows():
    assert imagenet_rows(["ants", "bees"]) == ([310, 309], [])
    assert imagenet_rows(["ants", "widgets"]) == (None, ["widgets"])
    assert imagenet_rows(["bee", "bees"]) == (None, ["bee", "bees"])
    assert imagenet_rows([str(d) for d in range(10)])[0] is None


def test_head_init_needs_imagenet_weights():
    with pytest.raises(ConfigError, match="train.head_init=imagenet_names needs train.pretrained=imagenet"):
        TrainCfg(head_init="imagenet_names", pretrained="none")
    with pytest.raises(ConfigError, match="train.head_init"):
        TrainCfg(head_init="zero")
