"""Class names that are ImageNet classes: the rows of the pretrained classifier to start the new head from.

A folder called `ants` or `bees` names a class the ImageNet head already separates. Starting the new
head from those rows (`train.head_init: imagenet_names`) begins fine-tuning at the backbone's own
zero-shot answer instead of at chance: on hymenoptera Lite0's ImageNet rows `ant`/`bee` alone score
0.948 on the held-out test, and a linear probe started there beat one started at random by one to two
images of 77 (benchmarks/RESULTS.md, 2026-12-02). Names come from timm's ImageNet synset lemmas.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Sequence

IMAGENET_CLASSES = 1000


@lru_cache(maxsize=1)
def _lemma_index() -> dict[str, set[int]]:
    """ImageNet-1k lemma (lower case) -> the class indices it names (some, like `crane`, name two)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    index: dict[str, set[int]] = {}
    for i in range(IMAGENET_CLASSES):
        for lemma in info.index_to_description(i).split(","):
            index.setdefault(lemma.strip().lower(), set()).add(i)
    return index


def _candidates(name: str) -> list[str]:
    """The folder name as written, spaced, and with an English plural ending removed."""
    base = re.sub(r"[_\-\s]+", " ", name.strip().lower())
    forms = [base]
    if base.endswith("ies"):
        forms.append(base[:-3] + "y")
    if base.endswith("es"):
        forms.append(base[:-2])
    if base.endswith("s"):
        forms.append(base[:-1])
    return forms


def imagenet_index(name: str) -> int | None:
    """The one ImageNet class `name` names, or None when it names none or several."""
    index = _lemma_index()
    for form in _candidates(name):
        hits = index.get(form, set())
        if len(hits) == 1:
            return next(iter(hits))
        if len(hits) > 1:
            return None  # ambiguous (crane the bird or the machine): no guess
    return None


def imagenet_rows(classes: Sequence[str]) -> tuple[list[int] | None, list[str]]:
    """(row per class in model order, or None; the classes that did not match one distinct row)."""
    rows = [imagenet_index(c) for c in classes]
    unmatched = [c for c, r in zip(classes, rows) if r is None]
    taken = [r for r in rows if r is not None]
    unmatched += [c for c, r in zip(classes, rows) if r is not None and taken.count(r) > 1]
    return (None if unmatched else [int(r) for r in rows]), unmatched
