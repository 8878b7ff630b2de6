"""Two hosts, one champion: two processes that share only a real Prefect server and a real MLflow
tracking server, each with its own workspace (so its own registry lock folder, as on two hosts),
run vistune's gate (`integrations.registry.gate`, what `register` calls) on two candidate versions
at the same moment. Through the Prefect limit they take turns: the better candidate ends champion
whatever the order, the alias history holds one entry per decision in one unbroken chain, and each
gate saw the other's finished decision (no lost update).

The same race without the Prefect limit (file locks only, as two hosts had before) broke in 6 of 7
tries on the 2-core dev machine (2026-12-02, load 10-12): the worse candidate left champion, a gate
compared with a stale champion, history chains forked or an entry was lost, once a gate crashed
on a duplicate history key; one try came out clean, so that failure is not asserted here.
The test took 37 s (load 9) and 72 s (load 15) on that machine: an MLflow server start and three interpreters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from integrations import history, registry, tags as T
from tests.conftest import REPO
from tests.integrations.mlflow_server import MlflowServer

NAME = "vistune-classifier"
METRIC = "test_macro_f1"

pytestmark = pytest.mark.slow

# one host: its own workspace (the registry lock folder is <workspace>/mlflow), the shared servers' URLs
GATE = r"""
import dataclasses, json, sys, time
from pathlib import Path
workspace, url, name, version, value, ready, go, out = sys.argv[1:9]
from integrations import registry, tracking
from vistune.config import load_params
cfg = dataclasses.replace(load_params(Path("params.yaml")).register, tracking_uri=url)
from flows import cross_host_lock  # every import done before the start line
client, lock = tracking.open_registry(cfg, Path(workspace), shared=cross_host_lock.hold)
Path(ready).touch()
while not Path(go).exists():
    time.sleep(0.005)
decision = registry.gate(client, name, version, "test_macro_f1", float(value), 0.0, lock,
                         actor=f"host:{Path(workspace).name}")
Path(out).write_text(json.dumps({**decision.as_dict(), "lock": str(lock)}))
"""


def _new_version(client, name: str, experiment_id: str) -> str:
    """A model version of its own run (what the gate needs of it: a version, its run, its metric)."""
    run = client.create_run(experiment_id)
    client.set_terminated(run.info.run_id)
    return str(client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id).version)


def _race(folder: Path, env: dict, url: str, name: str, candidates: dict[str, tuple[str, float]]) -> dict[str, dict]:
    """Start one gate process per host, release them together; returns each host's decision."""
    folder.mkdir()
    go = folder / "go"
    procs = {}
    for host, (version, value) in candidates.items():
        (folder / host).mkdir()
        procs[host] = subprocess.Popen(
            [
                sys.executable,
                "-c",
                GATE,
                str(folder / host),
                url,
                name,
                version,
                repr(value),
                str(folder / f"{host}.ready"),
                str(go),
                str(folder / f"{host}.json"),
            ],
            cwd=REPO,
            env=env,
        )
    deadline = time.monotonic() + 120
    while not all((folder / f"{host}.ready").exists() for host in procs):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs.values()), "gates did not start"
        time.sleep(0.05)
    go.touch()
    for host, proc in procs.items():
        assert proc.wait(timeout=180) == 0, f"host {host}'s gate failed"
    return {host: json.loads((folder / f"{host}.json").read_text()) for host in procs}


def _setup_store(client, name: str, lock: Path) -> tuple[str, str, str]:
    """Champion v1 (0.5) set by vistune's gate, and two candidates: v2 (0.6) and v3 (0.7)."""
    experiment_id = client.create_experiment(name)
    client.create_registered_model(name)
    v1 = _new_version(client, name, experiment_id)
    assert registry.gate(client, name, v1, METRIC, 0.5, 0.0, lock, actor="setup").promoted
    return v1, _new_version(client, name, experiment_id), _new_version(client, name, experiment_id)


def _problems(client, name: str, decisions: dict[str, dict], v1: str, best: str) -> list[str]:
    """Everything a lost update breaks (empty when the two gates took turns)."""
    problems = []
    champion = registry.alias_version(client, name, "champion")
    if champion != best:
        problems.append(f"champion is v{champion}, not the better candidate v{best}")
    first, second = sorted(decisions.values(), key=lambda d: d["champion_before"] != v1)
    if second["champion_before"] != (first["version"] if first["promoted"] else v1):
        problems.append(
            f"v{second['version']} was compared with v{second['champion_before']}, "
            f"not with the champion v{first['version']}'s gate left"
        )
    entries = history.read(client, name)
    if [e.seq for e in entries] != list(range(1, len(entries) + 1)):
        problems.append(f"history sequence {[e.seq for e in entries]} has gaps (an entry was overwritten)")
    if any(e.action == "outside" for e in entries):
        problems.append("one gate's alias change was taken for a change made outside vistune")
    for alias in ("challenger", "champion"):
        chain = [e for e in entries if e.alias == alias and e.action == "gate"]
        if any(a.to_version != b.from_version for a, b in zip(chain, chain[1:])):
            problems.append(f"{alias} history is not one chain: {[(e.from_version, e.to_version) for e in chain]}")
    for d in decisions.values():
        gated = [e for e in entries if e.alias == "challenger" and e.to_version == d["version"]]
        crowned = [e for e in entries if e.alias == "champion" and e.to_version == d["version"]]
        if len(gated) != 1 or len(crowned) != int(d["promoted"]):
            problems.append(
                f"v{d['version']}: {len(gated)} challenger and {len(crowned)} champion entries for one "
                f"decision (promoted={d['promoted']})"
            )
    if history.unrecorded_changes(client, name):
        problems.append(f"registry and history disagree: {history.unrecorded_changes(client, name)}")
    return problems


def _env(prefect_api_url: str | None) -> dict:
    env = {
        k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "VISTUNE_STORE_ROOT", "PREFECT_API_URL")
    }
    return env | {"PYTHONPATH": str(REPO)} | ({"PREFECT_API_URL": prefect_api_url} if prefect_api_url else {})


def test_two_hosts_sharing_only_the_servers_end_with_one_champion(harness, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    server = MlflowServer(tmp_path / "mlflow", f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}").start()
    try:
        client = server.client()
        v1, v2, v3 = _setup_store(client, NAME, tmp_path / "setup-lock")
        race = tmp_path / "race"
        decisions = _race(
            race, _env(PREFECT_API_URL.value()), server.url, NAME, {"host-a": (v2, 0.6), "host-b": (v3, 0.7)}
        )
        assert {d["lock"] for d in decisions.values()} == {str(race / h / "mlflow") for h in ("host-a", "host-b")}
        assert _problems(client, NAME, decisions, v1, best=v3) == []
        aliases = client.get_registered_model(NAME).aliases
        assert str(aliases["champion"]) == v3 and str(aliases["challenger"]) in (v2, v3)  # challenger: who gated last
        assert client.get_model_version(NAME, v3).tags[T.GATE] == "promoted"
        # the setup's gate and the two: one challenger entry each, one champion entry per promotion
        assert len(history.read(client, NAME)) == 4 + sum(d["promoted"] for d in decisions.values())
        with get_client(sync_client=True) as prefect:
            limit = prefect.read_global_concurrency_limit_by_name(f"vistune-registry-{NAME}")
        assert limit.limit == 1 and limit.active_slots == 0
    finally:
        server.stop()
