"""The `watch` flow: does a source folder hold labelled images the champion never trained on?

Scheduled (flows/serve.py: deployment `watch`, hourly), it compares the files of `source` (default:
params.yaml `data.source`) by content with the training manifest the champion's run logged, and
emits `vistune.data.arrived` (flows/events.py) when at least `min_new` are new; train-pipeline's
trigger on that event starts the retrain. Read-only: it never writes into the repository.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from prefect import flow, get_run_logger, task

from flows import events
from integrations import champion
from vistune.config import load_params
from vistune.data.arrivals import Arrivals, new_files

REPO = Path(__file__).resolve().parent.parent


@task(retries=2, retry_delay_seconds=10, task_run_name="compare-with-champion")
def compare(source: str, repo: str) -> tuple[str, str, Arrivals] | None:
    """(model, champion version, arrivals), or None when there is no champion (or manifest) to compare with."""
    params = load_params(Path(repo) / "params.yaml")
    folder = Path(source or params.data.source)
    folder = folder if folder.is_absolute() else (Path(repo) / folder).resolve()
    with tempfile.TemporaryDirectory(prefix="vistune-watch-") as tmp:
        found = champion.champion_manifest(params.register, Path(repo).resolve(), Path(tmp))
    if found is None or found[1] is None or "sha256" not in found[1]:
        get_run_logger().info(
            "no champion of %s with a logged training manifest yet: nothing to compare with", params.register.model_name
        )
        return None
    version, manifest = found
    return params.register.model_name, version, new_files(folder, set(manifest.sha256.dropna().astype(str)))


@flow(name="watch", log_prints=True)
def watch_flow(source: str = "", repo: str = str(REPO), min_new: int = 1) -> dict:
    """Compare a source folder with the champion's training data; emit `vistune.data.arrived` when it grew.

    Args:
        source: an ImageFolder (<class>/<image>); empty = params.yaml `data.source`
        repo: the vistune repository whose params.yaml names the MLflow store, model and source
        min_new: how many new labelled files make an arrival worth a retrain
    """
    logger = get_run_logger()
    found = compare(source, repo)
    if found is None:
        return {"arrived": False, "reason": "no champion to compare with"}
    model, version, arrivals = found
    logger.info(
        "%s: %d of %d labelled files are new to %s v%s",
        arrivals.folder,
        arrivals.n_new,
        arrivals.n_files,
        model,
        version,
    )
    if arrivals.n_new < min_new:
        return {"arrived": False, "n_new": arrivals.n_new, "champion_version": version}
    event = events.data_arrived(model, version, arrivals, repo)
    return {
        "arrived": True,
        "n_new": arrivals.n_new,
        "champion_version": version,
        "event_id": str(event.id) if event else None,
    }


if __name__ == "__main__":
    print(watch_flow())
