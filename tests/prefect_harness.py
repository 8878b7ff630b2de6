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
from pathlib import Path
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


@contextlib.contextmanager
def prefect_server_process(home: Path, startup_timeout_s: int = 180) -> Iterator[str]:
    """`prefect server start` (all its services, the triggers too) on a free port, its PREFECT_HOME under
    `home`; yields the API URL with this process's settings pointing at it. The harness above runs no
    triggers service: deployment triggers need this one."""
    import os
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.wait import wait_http
    from tests.conftest import free_port, stop_process_group

    port = free_port()
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PREFECT_HOME": str(home),
    }
    home.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=(home / "server.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/api/health", startup_timeout_s)
        drain_prefect_services()  # an events worker bound to an earlier server: evicted, the next binds here
        with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):
            try:
                yield f"http://127.0.0.1:{port}/api"
            finally:
                drain_prefect_services()
    finally:
        stop_process_group(server)
