"""The loop end to end, every server real: `prefect server start` (with its triggers service), the MLflow
sqlite store of a temp git repo, `python -m flows.serve` (the deployments and their runner) and
`vistune serve`. A first train-pipeline run makes v1 champion; new labelled images dropped into the
watched folder -> the `watch` flow sends `vistune.data.arrived` -> the deployment trigger starts a
train-pipeline run (ingest re-reads the folder) -> the gate makes v2 champion -> the running server
answers with v2; `vistune rollback` -> it answers with v1. Nothing is restarted by hand.

Tiny and cheap: 3 digit classes of 12 images (16 px), one epoch, the slow evaluation extras and the
label-issue search off, no significance test (any new version wins: min_improvement -1).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import stop_process_groups, tiny_git_repo, tiny_params_dict, write_params

pytestmark = pytest.mark.slow
NAME = "vistune-classifier"
CLASSES = (0, 1, 2)


def _digits(folder: Path, per_class: int, offset: int = 0, brighten: int = 0) -> list[Path]:
    """`per_class` scikit-learn digits of each class as 16 px PNGs in <folder>/<class>/ (`brighten`: a shift)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    written = []
    for cls in CLASSES:
        images = digits.images[digits.target == cls][offset : offset + per_class]
        (folder / str(cls)).mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(images):
            pixels = np.clip(img * 15 + brighten, 0, 255).astype(np.uint8)
            path = folder / str(cls) / f"d{offset + i}_{brighten}.png"
            Image.fromarray(pixels).resize((16, 16), Image.NEAREST).convert("RGB").save(path)
            written.append(path)
    return written


def _params(source: Path):
    def prepare(root: Path) -> None:
        write_params(
            root / "params.yaml",
            tiny_params_dict(
                data={"source": str(source), "max_per_class": 0},
                validate={"label_issue_folds": 0, "on_lookalike": "off"},  # neither check is what this tests
                evaluate={"robustness": False, "gradcam": False, "latency": False},
                register={"gate_test": "none", "min_improvement": -1.0},
                loop={"retrain_on_drift": False, "debounce_s": 300},
            ),
        )

    return prepare


def _deployment_runs(client, name: str) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deployment = client.read_deployment_by_name(name)
    return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))


def _wait(what: str, fn, timeout_s: float, logs: Path):
    deadline = time.monotonic() + timeout_s
    while not (found := fn()):
        tails = "\n".join(p.read_text()[-3000:] for p in sorted(logs.glob("*.log")))
        assert time.monotonic() < deadline, f"{what}: nothing after {timeout_s:.0f} s\n{tails}"
        time.sleep(1)
    return found


def _champion_moves(client, want: int) -> list[tuple]:
    """(old, new, action) of each `vistune.champion.changed` the server stored, oldest first; [] until `want`."""
    from prefect.events.filters import EventFilter, EventNameFilter

    found = client.read_events(EventFilter(event=EventNameFilter(name=["vistune.champion.changed"])), limit=10)
    events = sorted(found.events, key=lambda e: e.occurred)
    moves = [(e.payload["old_version"], e.payload["new_version"], e.payload["action"]) for e in events]
    return moves if len(moves) >= want else []


def test_new_images_retrain_promote_and_serve_then_rollback(tmp_path: Path):
    from prefect.client.orchestration import get_client

    from flows.pipeline import train_pipeline
    from flows.watch import watch_flow
    from tests.app.serving.test_follow_alias import _versions_answering, _wait_for_version
    from tests.app.test_serve import _split, _wait_ping, start_serve
    from tests.flows import approval_checks as approval
    from tests.prefect_harness import prefect_server_process, wait_for_triggers_service

    t0 = time.monotonic()
    source = tmp_path / "incoming"
    _digits(source, 12)
    repo = tiny_git_repo(tmp_path / "vistune", prepare=_params(source))
    logs = tmp_path / "logs"
    logs.mkdir()
    body = _split("image_b64", base64.b64encode((source / "0" / "d0_0.png").read_bytes()).decode())
    procs: list[subprocess.Popen] = []
    with prefect_server_process(tmp_path / "prefect") as api, get_client(sync_client=True) as client:
        try:
            first = train_pipeline(repo=str(repo))  # v1, the champion the watch compares with
            assert first["registration"]["promoted"] and str(first["registration"]["version"]) == "1"
            env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {
                "PYTHONPATH": str(repo),  # the runner's flow runs import the repo's own copy
                "PREFECT_API_URL": api,
                "PREFECT_HOME": str(tmp_path / "prefect-client"),
                "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            }
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "flows.serve", "--watch-every-s", "0"],
                    cwd=repo,
                    env=env,
                    stdout=(logs / "flows-serve.log").open("w"),
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            serve, url = start_serve(repo / "params.yaml", repo, "--poll-s", "1")
            procs.append(serve)
            _wait_ping(url, serve)
            assert _versions_answering(url, body)[0] == "1"
            approval.wait_for_deployment("train-pipeline/train-pipeline", procs, logs)
            arrival = f"retrain {NAME} on arrived data"
            _wait("the arrival trigger", lambda: client.read_automations_by_name(arrival), 60, logs)
            waited_triggers = wait_for_triggers_service(client)  # ... and live in the triggers service
            t_ready = time.monotonic()

            _digits(source, 4, offset=12, brighten=60)  # new, brighter images of every class
            watched = watch_flow(repo=str(repo))
            assert (watched["arrived"], watched["n_new"], watched["champion_version"]) == (True, 12, "1")
            runs = _wait(
                "a triggered train-pipeline run",
                lambda: _deployment_runs(client, "train-pipeline/train-pipeline"),
                120,
                logs,
            )
            done = approval.wait_state(runs[0].id, {"COMPLETED"}, logs, timeout=900)
            assert done.parameters["trigger"]["event"] == "vistune.data.arrived"
            assert done.parameters["trigger"]["id"] == watched["event_id"]
            t_retrained = time.monotonic()
            waited, _ = _wait_for_version(url, body, "2")  # the running server, no restart

            rollback = subprocess.run(
                [sys.executable, "-m", "app.cli", "--params", str(repo / "params.yaml"), "--root", str(repo)]
                + ["rollback"],
                env=env | {"PYTHONPATH": os.environ.get("PYTHONPATH", "")},
                capture_output=True,
                text=True,
            )
            assert rollback.returncode == 0 and "rolled back v2 -> v1" in rollback.stdout, rollback.stderr
            _wait_for_version(url, body, "1")
            assert all(p.poll() is None for p in procs)  # nothing restarted, nothing crashed
            moves = _wait("three champion moves", lambda: _champion_moves(client, 3), 60, logs)
            assert moves == [(None, "1", "gate"), ("1", "2", "gate"), ("2", "1", "rollback")]
            assert len(_deployment_runs(client, "train-pipeline/train-pipeline")) == 1  # one retrain
        finally:
            stop_process_groups(procs, grace_s=5)  # at once: their shutdowns overlap
    print(
        f"loop e2e: v1 + servers ready {t_ready - t0:.0f} s (triggers live {waited_triggers:.0f} s after the "
        f"automation was listed), arrival -> retrained {t_retrained - t_ready:.0f} s, "
        f"served v2 {waited:.1f} s later; total {time.monotonic() - t0:.0f} s"
    )
