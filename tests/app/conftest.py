"""Fixtures shared by the gate and serving tests."""

from __future__ import annotations

import pytest

from vistune.layout import Layout

from tests.integrations.registry_helpers import copy_layout, linear_probe_model


@pytest.fixture(scope="session")
def probed_tiny(trained_tiny: Layout, tmp_path_factory) -> Layout:
    """A copy of the session's trained layout whose model's head is refit as a linear probe: a second
    real model with other weights that is truly better on the same test split. Its metrics.json is
    still the one-epoch model's: a gate that trusts it instead of re-scoring gets the order wrong."""
    lay = copy_layout(trained_tiny, tmp_path_factory.mktemp("probed") / "lay")
    linear_probe_model(trained_tiny, lay.model)
    return lay
