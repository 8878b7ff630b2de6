"""Promotion waits for a reviewer: real Prefect flow runs pause with a typed form, are resumed with
input through the Prefect API (approve, reject), or time out; the registry's aliases and alias history
show each outcome with its comment and actor. Real sqlite registry, a real registered version."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from prefect import flow

from flows.approval import await_approval
from integrations import history, registry, tags as T, tracking

from tests.integrations.registry_helpers import METRIC_GATE_ONLY, register

NAME = "vistune-classifier"


@flow(name="approval-under-test")
def review_flow(reg: dict, repo: str) -> dict:
    """The same call train-pipeline makes once `register` reports "gate passed, approval required"."""
    return await_approval(reg, repo, poll_s=1)


def _paused_run_id(timeout: float = 60.0):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType

    paused = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["PAUSED"])))
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(flow_run_filter=paused)
            if runs:
                return runs[0].id
            time.sleep(0.5)
    raise AssertionError("the flow run never paused for approval")


def _run_in_background(reg: dict, repo: str) -> tuple[threading.Thread, list]:
    out: list = []
    worker = threading.Thread(target=lambda: out.append(review_flow(reg, repo, return_state=True)), daemon=True)
    worker.start()
    return worker, out


def _pending(client, lock, version: str, value: float) -> dict:
    """A gate pass that needs approval (what `register` does), as the receipt the flow reads."""
    decision = registry.gate(client, NAME, version, "test_macro_f1", value, 0.0, lock, approval_required=True)
    assert decision.pending_approval and not decision.promoted
    return decision.as_dict()


def test_approve_reject_and_timeout_in_real_flow_runs(harness, trained_tiny, mlflow_cfg, tmp_path):
    from prefect.flow_runs import resume_flow_run
    from prefect.input.actions import read_flow_run_input

    reg = register(
        trained_tiny, tmp_path / "run", mlflow_cfg, {**METRIC_GATE_ONLY, "approval": "required"}, macro_f1=0.5
    )
    assert reg["pending_approval"] and not reg["promoted"] and reg["reason"].startswith("gate passed, approval")
    client, lock = tracking.open_receipt_registry(reg, tmp_path)
    v1 = reg["version"]
    assert registry.alias_version(client, NAME, "challenger") == v1
    assert registry.alias_version(client, NAME, "champion") is None
    # the card the form links to: an artifact of the version's run, named on the version (Tracker.log_card)
    mv = client.get_model_version(NAME, v1)
    assert mv.tags[T.CARD] == reg["card"] and f"/runs/{reg['run_id']}/artifacts/card/model_card.html)" in mv.description
    card = Path(client.download_artifacts(reg["run_id"], "card/model_card.html", str(tmp_path))).read_text()
    assert card.lstrip().lower().startswith("<!doctype html") and f"v{v1}" in card

    # approve: the form carries the gate's numbers and the card link; v1 becomes champion
    worker, out = _run_in_background(reg, str(tmp_path))
    run_id = _paused_run_id()
    form = read_flow_run_input(f"paused-approval-v{v1}-description", run_id)
    assert (
        f"v{v1} to champion?" in form
        and "Model card" in form
        and f"{reg['run_id']}/artifacts/card/model_card.html" in form
    )
    resume_flow_run(run_id, run_input={"decision": "approve", "reviewer": "alice", "comment": "numbers check out"})
    worker.join(60)
    assert out[0].is_completed() and out[0].result()["outcome"] == "approved"
    assert registry.alias_version(client, NAME, "champion") == v1

    # reject: a better v2 stays challenger, champion v1 untouched
    v2 = str(client.create_model_version(NAME, client.get_model_version(NAME, v1).source, run_id=reg["run_id"]).version)
    reg2 = {**reg, **_pending(client, lock, v2, 0.9)}
    worker, out = _run_in_background(reg2, str(tmp_path))
    resume_flow_run(_paused_run_id(), run_input={"decision": "reject", "reviewer": "bob", "comment": "bias on 8s"})
    worker.join(60)
    assert out[0].is_completed() and out[0].result()["outcome"] == "rejected"
    assert registry.alias_version(client, NAME, "champion") == v1
    assert registry.alias_version(client, NAME, "challenger") == v2

    # timeout: nobody answers within approval_timeout_h; v3 stays challenger and the run says so
    v3 = str(client.create_model_version(NAME, client.get_model_version(NAME, v1).source, run_id=reg["run_id"]).version)
    reg3 = {**reg, **_pending(client, lock, v3, 0.95), "approval_timeout_h": 2 / 3600}
    state = review_flow(reg3, str(tmp_path), return_state=True)
    assert state.is_completed() and state.result()["outcome"] == "timed_out"
    assert registry.alias_version(client, NAME, "champion") == v1

    tags = {v: client.get_model_version(NAME, v).tags[T.APPROVAL] for v in (v1, v2, v3)}
    assert tags == {v1: "approved", v2: "rejected", v3: "timed_out"}
    reviews = [e for e in history.read(client, NAME) if e.action == "approval"]
    assert [(e.actor, e.from_version, e.to_version) for e in reviews] == [
        ("reviewer:alice", None, v1),
        ("reviewer:bob", v1, v1),
        (reviews[2].actor, v1, v1),
    ]
    assert reviews[0].reason == "approved by reviewer:alice: numbers check out"
    assert reviews[1].reason == f"v{v2} rejected by reviewer:bob: bias on 8s; v{v2} stays challenger"
    assert reviews[2].actor.startswith("flow:") and "no decision within" in reviews[2].reason
    with pytest.raises(ValueError, match="not waiting for approval"):
        registry.review(client, NAME, v2, lock, "approved", "", "cli:x", v1)
