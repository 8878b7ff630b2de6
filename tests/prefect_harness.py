"""Prefect's test server with a teardown that cannot hang the suite.

`prefect_test_harness` ends by draining the process-wide `EventsWorker` with no timeout. When that
worker's last event is still in flight (its client was built for a server a test pointed
`PREFECT_API_URL` at and then stopped), the drain never returns: seen once in a full `make test`
(2026-12-03, a pytest worker idle for 10+ min in the harness teardown). Draining first with a bound
stops and evicts the stuck instances, so the harness's own drain finds nothing left to wait for.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

DRAIN_TIMEOUT_S = 20.0


def drain_prefect_services(timeout_s: float = DRAIN_TIMEOUT_S) -> None:
    """Deliver pending events and logs for up to `timeout_s` each, then drop what is left."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (EventsWorker, APILogWorker):
        _, pending = service.drain_all(timeout=timeout_s)
        if pending:
            logging.getLogger(__name__).warning(
                "%s: %d drain(s) still pending after %.0f s; dropped", service.__name__, len(pending), timeout_s
            )


@contextlib.contextmanager
def prefect_server(startup_timeout_s: int = 90) -> Iterator[None]:
    """A temporary Prefect server for the block (real API, temp SQLite), torn down within bounds."""
    from prefect.testing.utilities import prefect_test_harness

    # an events worker left bound to an earlier test's server (one per process, keyed without the URL) would
    # send this block's task-run events there: evict it so the first event here binds a fresh one
    drain_prefect_services()
    with prefect_test_harness(server_startup_timeout=startup_timeout_s):
        try:
            yield
        finally:
            drain_prefect_services()
