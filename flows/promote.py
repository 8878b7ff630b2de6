"""Registry flows for the Prefect UI: promote a version, roll back, archive.

`python -m flows.promote <version>` promotes from a shell; `vistune promote` does the same
without Prefect. Both go through `integrations.registry` under the registry lock.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow, get_run_logger, task

from flows import cross_host_lock, events
from flows.retry import retry_unless_user_error
from integrations import registry, tracking
from vistune.config import load_params

REPO = Path(__file__).resolve().parent.parent


def _actor() -> str:
    """`flow:<this flow run's name>` for the alias history."""
    from prefect.runtime import flow_run

    return f"flow:{flow_run.name or flow_run.id or 'unknown'}"


def _open(repo: str):
    cfg = load_params(Path(repo) / "params.yaml").register
    client, lock = tracking.open_registry(cfg, Path(repo).resolve(), shared=cross_host_lock.hold)
    return cfg.model_name, client, lock


@task(
    retries=2,
    retry_delay_seconds=5,
    task_run_name="set-champion-v{version}",
    retry_condition_fn=retry_unless_user_error,
)
def set_champion(version: str, reason: str, repo: str, force: bool = False) -> str | None:
    name, client, lock = _open(repo)
    metric = load_params(Path(repo) / "params.yaml").register.gate_metric
    return registry.promote(client, name, version, lock, reason=reason, actor=_actor(), metric=metric, force=force)


@flow(name="promote")
def promote_flow(version: int, reason: str = "", force: bool = False, repo: str = str(REPO)) -> str | None:
    """Make `version` the champion; the version it replaces is recorded for rollback. A version the
    gate kept as challenger, or one worse than the champion, is refused unless `force` and a reason.

    Args:
        version: the model version number to promote (`vistune status` lists them)
        reason: why, recorded in the version's description and the alias history (required with force)
        force: promote even if the gate kept this version as challenger or it is worse than the champion
        repo: the vistune repository whose params.yaml names the MLflow store and model
    """
    events.install()  # vistune.champion.changed from the registry's one place (a forced promotion too)
    previous = set_champion(
        str(version), reason.strip() or ("" if force else "manual promotion from Prefect"), repo, force
    )
    get_run_logger().info("champion v%s -> v%s%s", previous, version, " (forced)" if force else "")
    return previous


@flow(name="rollback")
def rollback_flow(repo: str = str(REPO), to_time: str = "") -> tuple[str, str]:
    """Move `champion` back to the previous champion, or to the champion as of `to_time`.

    Args:
        repo: the vistune repository whose params.yaml names the MLflow store and model
        to_time: empty = the previous champion; or an ISO time (UTC unless it has a zone, e.g.
            2026-11-23T12:00:00) to restore the champion as of then
    """
    events.install()
    name, client, lock = _open(repo)
    frm, to = registry.rollback(client, name, lock, to_time=to_time or None, actor=_actor())
    get_run_logger().info("champion rolled back v%s -> v%s", frm, to)
    return frm, to


@flow(name="archive")
def archive_flow(version: int, repo: str = str(REPO)) -> None:
    """Take a version out of service: drop its aliases and tag it archived (never the champion).

    Args:
        version: the model version number to archive
        repo: the vistune repository whose params.yaml names the MLflow store and model
    """
    name, client, lock = _open(repo)
    registry.archive(client, name, str(version), lock, actor=_actor())


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit("usage: python -m flows.promote <version>   (or `vistune rollback` to roll back)")
    promote_flow(int(sys.argv[1]))
