"""A reviewer approves promotion in the Prefect UI (`register.approval: required`).

The DVC `register` stage (a subprocess) runs the gate; a version that passes is tagged
`vistune.approval=pending`, stays `challenger`, and its receipt (registration.json) says
`pending_approval`. The flow then, after giving the workspace lock back (a waiting run blocks no
other run), pauses with `pause_flow_run(wait_for_input=Review)`: the flow-run page shows a typed
form (approve / reject, reviewer, comment, force) under a description with the gate's numbers and links
to the model card and the version. The answer, or the timeout (`register.approval_timeout_h`), is
recorded by `integrations.registry.review`: one alias-history entry with comment and actor.

A pause needs a Prefect server the reviewer can reach; a run on a temporary in-process server
(no PREFECT_API_URL) leaves the version pending and says how to promote it by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field

from flows.summary import mlflow_links


class Review(RunInput):
    """The form a reviewer fills in on the paused flow run."""

    decision: Literal["approve", "reject"] = Field(
        description="approve: this version becomes champion; reject: it stays challenger"
    )
    reviewer: str = Field("", description="your name, recorded as the actor in the alias history")
    comment: str = Field(
        "", description="why; kept in the alias history and on the model version (the reason, with force)"
    )
    force: bool = Field(
        False,
        description="approve even if the promotion guard refuses (worse than the champion); needs a comment "
        "saying why, recorded as an override in the alias history, as `vistune promote --force --reason`",
    )


def form_text(reg: dict) -> str:
    """Markdown shown above the form: what is asked, the gate's numbers, where the evidence is."""
    links = mlflow_links(reg)
    champ = f"champion v{reg['champion_before']}" if reg.get("champion_before") else "no champion yet"
    vs = f" vs {reg['champion_value']:.4f}" if reg.get("champion_value") is not None else ""
    lines = [
        f"### Promote `{reg['model_name']}` v{reg['version']} to champion?",
        "",
        f"**Gate:** {reg.get('metric')} {reg.get('value', 0):.4f}{vs} ({champ}). {reg.get('reason', '')}",
        "",
    ]
    if reg.get("significance"):
        lines += [f"**Significance:** {reg['significance']}", ""]
    if "card" in links:
        lines.append(f"**[Model card]({links['card']})** (or `vistune card {reg['version']}`) · ")
    lines.append(f"[model version]({links.get('version', '')}) · [MLflow run]({links.get('run', '')})")
    lines += ["", f"No answer within {reg.get('approval_timeout_h', 24):g} h: v{reg['version']} stays challenger."]
    return "\n".join(lines)


@task(retries=2, retry_delay_seconds=5, task_run_name="record-review")
def record_review(reg: dict, repo: str, outcome: str, comment: str, actor: str, force: bool = False) -> dict:
    """The outcome into the registry (alias + history entry + version tags), under the registry lock."""
    from flows import cross_host_lock
    from integrations import registry, tracking

    client, lock = tracking.open_receipt_registry(reg, Path(repo).resolve(), shared=cross_host_lock.hold)
    outcome, reason = registry.review(
        client,
        reg["model_name"],
        str(reg["version"]),
        lock,
        outcome,
        comment,
        actor,
        reg.get("champion_before"),
        **({"metric": reg["metric"]} if reg.get("metric") else {}),
        force=force,
    )
    return {"outcome": outcome, "reason": reason, "version": str(reg["version"]), "actor": actor}


def _reports_to_server() -> bool:
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def _keep_running_after_timeout() -> None:
    """A pause that timed out leaves the run Paused and the server would fail it; the timeout is an
    outcome of the review, not a failure of the pipeline, so the run goes on to record it."""
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run.id, Running(message="approval timed out"), force=True)


def await_approval(reg: dict, repo: str, poll_s: int = 10) -> dict:
    """Pause this flow run until a reviewer answers (or the timeout); returns the recorded outcome.
    Call from inside a flow, after the workspace lock is released."""
    logger = get_run_logger()
    version, hours = str(reg["version"]), float(reg.get("approval_timeout_h", 24.0))
    if not _reports_to_server():
        logger.warning(
            "v%s passed the gate and needs approval, but this run reports to no Prefect server (set "
            "PREFECT_API_URL, e.g. `make up`): it stays challenger, pending; `vistune promote %s "
            "--reason ...` after review",
            version,
            version,
        )
        return {"outcome": "pending", "version": version}
    timeout = max(1, round(hours * 3600))
    logger.info("v%s passed the gate; waiting up to %g h for a reviewer (flow run page: Resume)", version, hours)
    try:
        answer = pause_flow_run(
            wait_for_input=Review.with_initial_data(description=form_text(reg)),
            timeout=timeout,
            poll_interval=max(1, min(poll_s, timeout)),
            key=f"approval-v{version}",
        )
        outcome = "approved" if answer.decision == "approve" else "rejected"
        actor = f"reviewer:{answer.reviewer.strip()}" if answer.reviewer.strip() else f"prefect-ui:{flow_run.name}"
        result = record_review(reg, repo, outcome, answer.comment.strip(), actor, answer.force)
    except FlowPauseTimeout:
        _keep_running_after_timeout()
        result = record_review(
            reg,
            repo,
            "timed_out",
            f"no decision within {hours:g} h (register.approval_timeout_h)",
            f"flow:{flow_run.name}",
        )
    (logger.info if result["outcome"] == "approved" else logger.warning)(
        "approval of v%s: %s — %s", version, result["outcome"], result["reason"]
    )
    create_markdown_artifact(
        key="vistune-approval",
        description="the reviewer's decision on promotion",
        markdown=f"## Approval of v{version}: {result['outcome']}\n\n{result['reason']}\n",
    )
    return result
