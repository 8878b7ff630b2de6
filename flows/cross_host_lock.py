"""The registry lock across hosts: a one-slot Prefect global concurrency limit named for the model.

`registry.registry_lock`'s file lock serialises alias changes of processes that share its folder,
which means one host. Workers on several hosts that share only a Prefect server and an MLflow server
need a lock all of them see: when this process reports to a Prefect server (`PREFECT_API_URL` set, as
`make up`, served deployments and pool workers set it, and the DVC stages they start inherit it), the
gate's read-compare-set of `champion` also holds the one slot of the global concurrency limit
`vistune-registry-<model>` (created with limit 1 on first use, visible under Concurrency in the UI).
Without a server the file lock alone holds, as before.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

PREFIX = "vistune-registry-"


def limit_name(model_name: str) -> str:
    return f"{PREFIX}{model_name}"


def server_url() -> str:
    """The Prefect API this process reports to ('' for none: one host, the file lock suffices)."""
    return os.environ.get("PREFECT_API_URL", "").strip()


def _ensure_limit(name: str) -> None:
    """Create the one-slot limit unless it exists (two hosts may race to create it: one wins)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        try:
            client.upsert_global_concurrency_limit_by_name(name, 1)
        except Exception:
            client.read_global_concurrency_limit_by_name(name)  # created meanwhile by another host; else raises


@contextmanager
def hold(model_name: str, timeout_s: float = 300.0) -> Iterator[str | None]:
    """Hold the model's registry slot on the Prefect server for the block (yields the limit's name),
    or do nothing (yields None) when no server is configured."""
    if not server_url():
        yield None
        return
    from prefect.concurrency.sync import concurrency

    name = limit_name(model_name)
    _ensure_limit(name)
    with concurrency(name, occupy=1, timeout_seconds=timeout_s, strict=True):
        yield name
