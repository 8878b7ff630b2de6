"""The look-alike rule on features with known objects: another shot of a train object is flagged with its
partner, a new object of the same class is not, and the check declines what it cannot calibrate."""

from __future__ import annotations

import math

import numpy as np

from vistune.data.lookalikes import find_lookalikes

DIM, CLASSES, TRAIN_OBJECTS = 64, 3, 60  # per class


def shots_of_objects(seed: int = 0):
    """Class centre + object offset + per-shot noise: objects differ more than two shots of one object."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4.0, (CLASSES, DIM))
    feats, labels, train, objects = [], [], [], []
    for c in range(CLASSES):
        offsets = rng.normal(0, 1.0, (TRAIN_OBJECTS + 10, DIM))
        for k, off in enumerate(offsets):
            in_train = k < TRAIN_OBJECTS
            # a train object; every 6th also shot again for val; the last 10 objects only in val
            for is_train in [True, False] if in_train and k % 6 == 0 else [in_train]:
                feats.append(centres[c] + off + rng.normal(0, 0.25, DIM))
                labels.append(c)
                train.append(is_train)
                objects.append((c, k))
    return np.array(feats), np.array(labels), np.array(train), objects


def test_another_shot_is_flagged_with_its_partner_and_new_objects_are_not() -> None:
    feats, labels, train, objects = shots_of_objects()
    found = find_lookalikes(feats, labels, train)
    val = np.flatnonzero(~train)
    repeats = {i for i in val if objects[i][1] < TRAIN_OBJECTS}
    assert set(found.rows.tolist()) == repeats  # every re-shot object, no new object
    assert all(objects[i] == objects[j] and train[j] for i, j in zip(found.rows, found.partners))
    assert np.all(found.similarity > found.threshold) and found.threshold < 1


def test_it_declines_what_it_cannot_calibrate() -> None:
    feats, labels, train, _ = shots_of_objects()
    one_class = find_lookalikes(feats, np.zeros_like(labels), train)  # no pair known to be two objects
    assert len(one_class.rows) == 0 and math.isnan(one_class.threshold)
    no_val = find_lookalikes(feats, labels, np.ones_like(train))
    assert len(no_val.rows) == 0
    unseen = labels.copy()
    unseen[~train] = 99  # val classes train never had: nothing to compare with
    assert len(find_lookalikes(feats, unseen, train).rows) == 0
