"""One Prefect test server (prefect_test_harness) for all flow tests in a session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
