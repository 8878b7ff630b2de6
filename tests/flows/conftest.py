"""One Prefect test server (prefect_test_harness) for all flow tests in a session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def harness():
    from tests.prefect_harness import prefect_server

    with prefect_server():
        yield
