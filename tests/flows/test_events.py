"""The payload of `vistune.data.drifted`: the tests that fired, read back from validate's flat drift.json."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flows.events import fired_tests
from vistune.evaluate import drift


def _manifest(n: int, seed: int, brightness: tuple[float, float]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "label": rng.choice(["a", "b"], n),
            "width": 32,
            "height": 32,
            "aspect": 1.0,
            "brightness": rng.uniform(*brightness, n),
            "mode": "RGB",
        }
    )


def test_fired_tests_are_the_ones_behind_the_drift_decision():
    ref = _manifest(300, 0, (0.2, 0.6))
    shifted = drift.compare(ref, _manifest(120, 1, (0.5, 0.9)), 2.0, reference_name="m v1", labelled=True)
    same = drift.compare(ref, _manifest(120, 2, (0.2, 0.6)), 2.0, reference_name="m v1", labelled=True)
    assert shifted.drifted and not same.drifted
    fired = fired_tests(shifted.as_metrics())
    assert [t["test"] for t in fired] == ["brightness"]  # only the brightness shift is significant
    assert fired[0]["p"] == pytest.approx(min(t.p_value for t in shifted.tests), rel=1e-5)  # drift.json keeps 6 digits
    assert fired_tests(same.as_metrics()) == []
