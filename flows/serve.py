"""Serve vistune's deployments to a Prefect server so the UI can trigger them.

`make up` starts the server and runs this; deployments: train-pipeline, validate-only,
promote, rollback, archive, and a weekly `retrain` schedule that is paused until a user
turns it on. `train-pipeline` runs one at a time (deployment concurrency limit 1, queued),
and the flow itself also holds a workspace lock.
"""

from __future__ import annotations

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

from flows.pipeline import train_pipeline, validate_only
from flows.promote import archive_flow, promote_flow, rollback_flow

ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def deployments() -> list:
    return [
        train_pipeline.to_deployment(name="train-pipeline", concurrency_limit=ONE_AT_A_TIME, tags=["vistune"],
                                     description="Full chain through DVC: validate, augment, train, evaluate, register"),
        validate_only.to_deployment(name="validate-only", tags=["vistune"]),
        promote_flow.to_deployment(name="promote", tags=["vistune", "registry"]),
        rollback_flow.to_deployment(name="rollback", tags=["vistune", "registry"]),
        archive_flow.to_deployment(name="archive", tags=["vistune", "registry"]),
        train_pipeline.to_deployment(name="retrain", cron="0 3 * * 1", paused=True, concurrency_limit=ONE_AT_A_TIME,
                                     tags=["vistune", "scheduled"],
                                     description="Weekly retrain (Mondays 03:00); paused until you resume it"),
    ]


def main() -> None:
    serve(*deployments(), limit=2)


if __name__ == "__main__":
    main()
