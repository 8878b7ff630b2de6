"""The registry lock across hosts: two processes with separate lock folders (as on two hosts) share
only a Prefect server; with it their critical sections never overlap, without it they do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

HOLD = r"""
import json, sys, time
from pathlib import Path
from integrations.registry import RegistryLock, registry_lock
lock_dir, out, ready, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
from flows.cross_host_lock import hold  # imports done before the start line
ready.touch()
while not go.exists():
    time.sleep(0.05)
spans = []
for _ in range(2):
    with registry_lock(RegistryLock(lock_dir, hold), "vistune-classifier"):
        start = time.time()
        time.sleep(1.0)
        spans.append((start, time.time()))
out.write_text(json.dumps(spans))
"""


def _race(tmp_path: Path, env: dict) -> list[tuple[float, float]]:
    go = tmp_path / "go"
    procs, outs, readies = [], [], []
    for host in ("a", "b"):
        outs.append(tmp_path / f"{host}.json")
        readies.append(tmp_path / f"{host}.ready")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", HOLD, str(tmp_path / f"lock-{host}"), str(outs[-1]), str(readies[-1]), str(go)],
                cwd=REPO,
                env=env,
            )
        )
    import time

    deadline = time.monotonic() + 120
    while not all(r.exists() for r in readies):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "lock holders did not start"
        time.sleep(0.1)
    go.touch()
    for p in procs:
        assert p.wait(timeout=180) == 0
    return sorted(span for out in outs for span in json.loads(out.read_text()))


def _overlaps(spans: list[tuple[float, float]]) -> bool:
    return any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))


def test_prefect_concurrency_limit_serialises_hosts(harness, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PYTHONPATH": str(REPO)}
    (tmp_path / "alone").mkdir()
    assert _overlaps(_race(tmp_path / "alone", env))  # two hosts, file locks only: they overlap

    (tmp_path / "shared").mkdir()
    spans = _race(tmp_path / "shared", env | {"PREFECT_API_URL": PREFECT_API_URL.value()})
    assert len(spans) == 4 and not _overlaps(spans)
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name("vistune-registry-vistune-classifier")
    assert limit.limit == 1 and limit.active_slots == 0
