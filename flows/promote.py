"""Registry flows for the Prefect UI: promote a version, roll back, archive.

`python -m flows.promote <version>` promotes from a shell; `vistune promote` does the same
without Prefect. Both go through `integrations.registry` under the registry lock.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow, get_run_logger, task

from integrations import registry, tracking
from vistune.config import load_params

REPO = Path(__file__).resolve().parent.parent


def _actor() -> str:
    """`flow:<this flow run's name>` for the alias history."""
    from prefect.runtime import flow_run

    return f"flow:{flow_run.name or flow_run.id or 'unknown'}"


def _open(repo: str):
    cfg = load_params(Path(repo) / "params.yaml").register
    client, lock = tracking.open_registry(cfg, Path(repo).resolve())
    return cfg.model_name, client, lock


@task(retries=2, retry_delay_seconds=5)
def set_champion(version: str, reason: str, repo: str) -> str | None:
    name, client, lock = _open(repo)
    return registry.promote(client, name, version, lock, reason=reason, actor=_actor())


@flow(name="promote")
def promote_flow(version: str, reason: str = "manual promotion from Prefect", repo: str = str(REPO)) -> str | None:
    """Make `version` the champion; the version it replaces is recorded for rollback."""
    previous = set_champion(version, reason, repo)
    get_run_logger().info("champion v%s -> v%s", previous, version)
    return previous


@flow(name="rollback")
def rollback_flow(repo: str = str(REPO), to_time: str | None = None) -> tuple[str, str]:
    """Move `champion` back to the previous champion, or to the champion as of `to_time` (ISO, UTC)."""
    name, client, lock = _open(repo)
    frm, to = registry.rollback(client, name, lock, to_time=to_time, actor=_actor())
    get_run_logger().info("champion rolled back v%s -> v%s", frm, to)
    return frm, to


@flow(name="archive")
def archive_flow(version: str, repo: str = str(REPO)) -> None:
    name, client, lock = _open(repo)
    registry.archive(client, name, version, lock, actor=_actor())


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m flows.promote <version>   (or `vistune rollback` to roll back)")
    promote_flow(sys.argv[1])
