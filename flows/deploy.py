"""Deploy train-pipeline to a Prefect process work pool, for workers to pull runs in parallel.

`make pool` creates the pool (`prefect work-pool create vistune-process --type process`) and runs
this; `make workers` starts two `prefect worker start --pool vistune-process` processes. The flow
code is loaded from this repository's directory (`flow.from_source` on a local path: the worker
runs it in place, nothing is copied or built), and every run defaults to `workspace="isolated"`:
its own git worktree, so two workers train two runs at once on one repository.

`flows/serve.py` (`make up`) keeps serving the in-process deployments (one run at a time).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from uuid import UUID

from flows.pipeline import REPO, train_pipeline

POOL = "vistune-process"
DEPLOYMENT = "train-pipeline-pool"


def deploy_to_pool(repo: Path = REPO, pool: str = POOL, name: str = DEPLOYMENT) -> UUID:
    """Register the train-pipeline deployment of `repo` on work pool `pool`; returns its id."""
    from prefect.deployments.runner import deploy

    from flows.form import prefill

    repo = repo.resolve()
    source = train_pipeline.from_source(source=str(repo), entrypoint="flows/pipeline.py:train_pipeline")
    deployment = prefill(
        source.to_deployment(
            name=name,
            parameters={"workspace": "isolated", "repo": str(repo)},
            tags=["vistune", "work-pool"],
            description="Full chain through DVC in an isolated git worktree per run: workers run several at once",
        ),
        repo / "params.yaml",
    )
    return deploy(
        deployment, work_pool_name=pool, build=False, push=False, print_next_steps_message=False, ignore_warnings=True
    )[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="repository the workers run (default: this one)")
    parser.add_argument("--pool", default=POOL)
    parser.add_argument("--name", default=DEPLOYMENT)
    args = parser.parse_args()
    deployment_id = deploy_to_pool(args.repo, args.pool, args.name)
    print(
        f"deployment train-pipeline/{args.name} ({deployment_id}) on work pool {args.pool}: "
        f"prefect deployment run train-pipeline/{args.name}"
    )


if __name__ == "__main__":
    main()
