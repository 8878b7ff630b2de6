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


def wait_for_triggers_service(client, timeout_s: float = 120) -> float:
    """Block until the server's triggers service acts on the automations created so far; returns the
    seconds waited. Polls instead of a fixed sleep (15 s was the margin needed under suite load): a probe
    automation created last fires on a probe event, and the service loads automations in the order they are
    created (one lock, on SQLite right after each commit; else all at once at its 5 s reconcile)."""
    import time
    import uuid

    from prefect.events import emit_event
    from prefect.events.actions import DoNothing
    from prefect.events.filters import EventFilter, EventNameFilter
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    probe = f"vistune.test.probe.{uuid.uuid4().hex[:8]}"
    trigger = EventTrigger(
        expect={"vistune.test.probe"},
        match={"prefect.resource.id": probe},
        posture=Posture.Reactive,
        threshold=1,
    )
    automation_id = client.create_automation(
        AutomationCore(name=f"probe {probe}", trigger=trigger, actions=[DoNothing()])
    )
    t0 = time.monotonic()

    def probe_fired() -> bool:  # a filter built now: its default `occurred.until` is the time it is built
        fired = EventFilter(event=EventNameFilter(name=["prefect.automation.triggered"]))
        found = client.read_events(fired, limit=50).events
        return any(e.resource.id == f"prefect.automation.{automation_id}" for e in found)

    try:
        while not probe_fired():
            assert time.monotonic() - t0 < timeout_s, f"the triggers service did not act in {timeout_s:.0f} s"
            emit_event(event="vistune.test.probe", resource={"prefect.resource.id": probe})
            time.sleep(0.5)
    finally:
        client.delete_automation(automation_id)
    return time.monotonic() - t0
