"""Serve vistune's deployments to a Prefect server so the UI can trigger them.

`make up` starts the server and runs this; deployments: train-pipeline, validate-only,
promote, rollback, archive, score (batch predictions), and a weekly `retrain` schedule that is
paused until a user turns it on. `train-pipeline` runs one at a time (deployment concurrency limit 1, queued),
and the flow itself also holds a workspace lock. The run forms of train-pipeline and validate-only
are pre-filled with params.yaml as it is now (flows/form.py; restart this to refresh them); the
scheduled `retrain` takes no form values, so it always trains on the workspace's params.yaml.

The loop (docs/continuous-training.md): `watch` runs hourly and emits `vistune.data.arrived` when
`data.source` holds labelled images the champion never trained on; train-pipeline carries deployment
triggers on that and on `vistune.data.drifted` (flows/triggers.py), debounced; params.yaml `loop` switches
leave a trigger out; `--no-retrain-on-arrival`, `--no-retrain-on-drift` create them switched off,
`--watch-every-s 0` leaves the watch unscheduled.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

from flows.form import prefill
from flows.pipeline import REPO, train_pipeline, validate_only
from flows.promote import archive_flow, promote_flow, rollback_flow
from flows.score import score_flow
from flows.triggers import deployment_triggers
from flows.watch import watch_flow
from vistune.config import load_params

PARAMS = REPO / "params.yaml"  # the repository the deployments' `repo` parameter defaults to
ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def deployments(
    retrain_on_arrival: bool = True,
    retrain_on_drift: bool = True,
    debounce_s: int | None = None,
    watch_every_s: int = 3600,
    params: Path = PARAMS,
) -> list:
    """The deployments; train-pipeline's triggers follow `params` (its `loop` section; `debounce_s` None =
    `loop.debounce_s`), the flags create the remaining ones switched off."""
    triggers = deployment_triggers(load_params(params), retrain_on_arrival, retrain_on_drift, debounce_s)
    return [
        prefill(
            train_pipeline.to_deployment(
                name="train-pipeline",
                concurrency_limit=ONE_AT_A_TIME,
                tags=["vistune"],
                triggers=triggers,
                description="Full chain through DVC: validate, augment, train, evaluate, register",
            ),
            params,
        ),
        prefill(
            validate_only.to_deployment(
                name="validate-only", tags=["vistune"], description="Ingest + validate a data source, no training"
            ),
            params,
            field="data_source",
        ),
        promote_flow.to_deployment(
            name="promote", tags=["vistune", "registry"], description="Make a model version the champion"
        ),
        rollback_flow.to_deployment(
            name="rollback",
            tags=["vistune", "registry"],
            description="Champion back to the previous one (or the one as of a time)",
        ),
        archive_flow.to_deployment(
            name="archive", tags=["vistune", "registry"], description="Drop a version's aliases and tag it archived"
        ),
        score_flow.to_deployment(
            name="score",
            tags=["vistune", "score"],
            description="Batch predictions with the champion (or a version) + drift",
        ),
        train_pipeline.to_deployment(
            name="retrain",
            cron="0 3 * * 1",
            paused=True,
            concurrency_limit=ONE_AT_A_TIME,
            tags=["vistune", "scheduled"],
            description="Weekly retrain (Mondays 03:00); paused until you resume it",
        ),
        watch_flow.to_deployment(
            name="watch",
            interval=watch_every_s or None,
            tags=["vistune", "loop"],
            description="Emit vistune.data.arrived when data.source has images the champion never trained on",
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-retrain-on-arrival", action="store_true", help="create the arrival trigger switched off")
    ap.add_argument("--no-retrain-on-drift", action="store_true", help="create the drift trigger switched off")
    ap.add_argument(
        "--debounce-s",
        type=int,
        default=None,
        help="one retrain per burst of events this long (default: loop.debounce_s)",
    )
    ap.add_argument("--watch-every-s", type=int, default=3600, help="watch schedule; 0 = not scheduled")
    args = ap.parse_args(argv)
    serve(
        *deployments(not args.no_retrain_on_arrival, not args.no_retrain_on_drift, args.debounce_s, args.watch_every_s),
        limit=2,
    )


if __name__ == "__main__":
    main()
