"""The `train-pipeline` flow: validate -> augment -> train -> evaluate -> register, via DVC.

Run it with `python -m flows.pipeline` (a temporary Prefect server is started when none is
configured) or trigger the served deployment from the Prefect UI. Every stage is
`dvc repro --single-item <stage>`, so DVC skips unchanged stages and a flow run shares one
cache and one dvc.lock with `dvc repro`. Parameters from the UI are written into params.yaml
(as `dvc exp run --set-param` does) and the finished run is saved with `dvc exp save`, so
`dvc exp show`, the Prefect flow run and the MLflow run carry one name. A run given form values
then puts params.yaml, dvc.lock and the outputs back as it found them: the experiment keeps its
own, and a later run with empty fields means the workspace's params.yaml again. The report
artifacts are built in flows/summary.py.

A stage task is cached by Prefect only under its dvc.lock entry and only while
`dvc status <stage>` is clean, so "Cached" in the UI means exactly "DVC would skip it". A run
that fails rolls the workspace back (params.yaml, dvc.lock, outputs) to where it started.

`workspace="shared"` (default) runs in the repository itself, one run at a time; `"isolated"`
runs in a throwaway git worktree of HEAD on the same DVC cache and MLflow registry
(flows/isolation.py), so runs picked up by several workers train in parallel.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Literal

from filelock import FileLock, Timeout
from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run

from app.fit_recipe import write_recipe
from app.report import read_json
from flows import events
from flows.approval import await_approval
from flows.dvc_cli import StageFailed, dvc_output, run_dvc, stages as dvc_stages, warn_once
from flows.isolation import isolated_workspace, repo_git_lock, stage_run_files
from flows.form import form_baseline
from flows.params import PipelineParams, apply_overrides, form_values
from flows.registry_guard import flag_outside_changes
from flows.retry import retry_unless_user_error
from flows.summary import publish_summary
from flows.workspace import Snapshot, stage_cache_key
from vistune.layout import Layout

REPO = Path(__file__).resolve().parent.parent

Workspace = Literal["shared", "isolated"]
# a run started by an event re-reads the source: DVC does not track a source folder's files (ingest's deps are
# the code and `data` params), so new images there change nothing DVC sees; the stages after it run only
# when what ingest wrote differs (DVC compares the hashes)
REREAD_ON_EVENT = ("ingest",)


@contextmanager
def workspace_lock(repo: Path, logger) -> Iterator[None]:
    """One pipeline run at a time per DVC workspace: a second run waits here, and says so."""
    lock_dir = repo / ".dvc" / "tmp"
    lock_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_dir / "vistune-pipeline.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.info("another vistune run holds the DVC workspace of %s; waiting for it to finish", repo)
        lock.acquire(timeout=6 * 3600)
    try:
        yield
    finally:
        lock.release()


@contextmanager
def run_workspace(repo: Path, workspace: Workspace, logger) -> Iterator[Path]:
    """Where this run's stages run: the repository itself (locked) or its own worktree."""
    if workspace == "isolated":
        with isolated_workspace(repo, str(flow_run.id or "local"), log=logger.info) as path:
            yield path
    else:
        with workspace_lock(repo, logger):
            yield repo


def _stage_env(experiment: str, store_root: str = "") -> dict[str, str]:
    """Lineage for the MLflow run; `store_root` (isolated runs) = the repo whose MLflow store and
    registry lock a relative `register.tracking_uri` means (integrations/tracking.py)."""
    env = {
        "VISTUNE_DVC_EXPERIMENT": experiment,
        "VISTUNE_PREFECT_FLOW_RUN_ID": str(flow_run.id or ""),
        "VISTUNE_PREFECT_FLOW_RUN_NAME": str(flow_run.name or ""),
    }
    if store_root:
        env["VISTUNE_STORE_ROOT"] = store_root
    return env


def _dvc_cache_key(context, parameters: dict) -> str | None:
    """Prefect cache key = the stage's dvc.lock entry, only while DVC says the stage is up to date."""
    if parameters.get("force"):
        return None
    return stage_cache_key(Path(parameters["repo"]), parameters["stage"])


@task(
    retries=3,
    retry_delay_seconds=[5, 30, 60],
    retry_condition_fn=retry_unless_user_error,
    timeout_seconds=6 * 3600,
    task_run_name="{stage}",
    cache_key_fn=_dvc_cache_key,
    persist_result=True,
)
def run_stage(stage: str, repo: str, force: bool = False, experiment: str = "", store_root: str = "") -> str:
    """One DVC stage; retried with backoff (a killed `train` resumes from its checkpoint)."""
    logger = get_run_logger()
    args = ["repro", "--single-item", stage] + (["--force"] if force else [])
    out = run_dvc(
        args,
        Path(repo),
        log=warn_once(logger.info, str(flow_run.id or "local")),
        env=_stage_env(experiment, store_root),
    )
    return "skipped (unchanged)" if "didn't change, skipping" in out else "ran"


@task(task_run_name="apply-params")
def apply_params(params: PipelineParams, repo: str, fit_recipe: bool = False) -> dict:
    """Write the form's changes into params.yaml; a field left at its params.yaml value or at the value
    the deployment's form was pre-filled with (flows/form.py) is not a change.

    `fit_recipe`: when the only change is the data source, fit the whole recipe to it as `vistune init`
    does (backbone, image size, epochs, augmentation ...), each change logged with its reason."""
    logger = get_run_logger()
    params_file = Path(repo) / "params.yaml"
    unchanged = (form_values(params_file), form_baseline())
    overrides = params.overrides(*unchanged)
    if fit_recipe and set(overrides) == {"data.source"}:
        logger.info(
            "only the data source changed: fitting params.yaml to it (as `vistune init %s`)", overrides["data.source"]
        )
        changes = write_recipe(str(overrides["data.source"]), params_file, say=logger.info)
        return {c.key: c.new for c in changes}
    if overrides:
        logger.info("setting params (as dvc exp run --set-param): %s", " ".join(params.set_param_args(*unchanged)))
    apply_overrides(params_file, overrides)
    return overrides


def _has_commit(repo: Path) -> bool:
    return subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=repo, capture_output=True).returncode == 0


def experiment_name(run_name: str) -> str:
    """The DVC experiment (and MLflow run) name of a flow run: its name, with each run of characters a git
    ref refuses (a name typed in the Custom run form may hold spaces or `=`) made one `-`."""
    name = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "-", run_name)).strip("-.")
    return name.removesuffix(".lock") or "vistune-run"


@task(task_run_name="record-experiment")
def record_experiment(repo: str, name: str, main_repo: str = "") -> str:
    """`dvc exp save`: params, dvc.lock and metrics of this run become a named DVC experiment.

    Saved under the git lock of `main_repo` (default: `repo`): worktrees share its refs and stash."""
    if not _has_commit(Path(repo)):
        get_run_logger().warning("no git commit in %s: DVC experiments need one; run not saved as an experiment", repo)
        return ""
    with repo_git_lock(Path(main_repo or repo)):
        # an isolated worktree: DVC's autostage is off there (flows.isolation.share_dvc_config)
        if main_repo and Path(main_repo).resolve() != Path(repo).resolve():
            stage_run_files(Path(repo))
        run_dvc(
            ["exp", "save", "--name", name, "--force"],
            Path(repo),
            log=warn_once(get_run_logger().info, str(flow_run.id or "local")),
        )
    return name


def default_remote(repo: Path) -> str:
    """The DVC default remote's name (`dvc remote add -d`), '' when none is configured."""
    proc = dvc_output(["remote", "default"], repo)
    return proc.stdout.strip() if proc.returncode == 0 else ""


@task(task_run_name="push-outputs", retries=2, retry_delay_seconds=[10, 60])
def push_outputs(repo: str) -> str:
    """`dvc push` of every output to the default remote after a successful run, so a fresh clone's
    `dvc pull` gets the champion's data and model; a no-op (logged) when no remote is configured."""
    logger = get_run_logger()
    remote = default_remote(Path(repo))
    if not remote:
        logger.info("no default DVC remote: outputs stay in the local cache (`dvc remote add -d NAME URL` to push)")
        return ""
    run_dvc(["push"], Path(repo), log=warn_once(logger.info, str(flow_run.id or "local")))
    return remote


def emit_drift(repo: str, emitter: str) -> None:
    """After `validate`: `vistune.data.drifted` when its drift result against the champion says so.
    From the flow, not the stage: stages stay free of Prefect."""
    from vistune.config import load_params

    layout = Layout(Path(repo))
    try:
        drift = read_json(layout.drift)
        if drift:
            model = load_params(Path(repo) / "params.yaml").register.model_name
            events.data_drifted(model, drift, layout.manifest, repo, emitter)
    except Exception as exc:  # noqa: BLE001 - a notice: it never fails the run
        get_run_logger().warning("%s not sent: %s", events.DATA_DRIFTED, exc)


def _run_stages(
    stages: tuple[str, ...],
    params: PipelineParams,
    repo: str,
    force: bool,
    experiment: str,
    logger,
    snapshot: Snapshot | None,
    store_root: str = "",
    fit_recipe: bool = False,
    emitter: str = "train-pipeline",
    reread: tuple[str, ...] = (),
) -> tuple[dict, dict]:
    """Apply params (`fit_recipe`: see `apply_params`) and run the stages (`reread`: stages forced to run,
    e.g. `ingest` when an event says the source changed); on failure say where it broke and roll the
    workspace back to `snapshot` (None for an isolated run: its worktree is thrown away)."""
    states: dict[str, str] = {}
    stage = "apply-params"
    try:
        overrides = apply_params(params, repo, fit_recipe)
        for stage in stages:
            states[stage] = run_stage(stage, repo, force or stage in reread, experiment, store_root)
            if stage == "validate":
                emit_drift(repo, emitter)
    except BaseException as exc:
        logger.error(
            "stage '%s' failed: %s; the MLflow registry is unchanged unless `register` ran",
            stage,
            "rolling the workspace back" if snapshot else "discarding the run's worktree",
        )
        if snapshot:
            snapshot.restore(logger.info)
        if isinstance(exc, Exception):
            retryable = getattr(exc, "retryable", True) and stage in stages
            tries = (
                f"after {1 + (run_stage.retries or 0)} attempts"
                if retryable
                else "on its first attempt (a configuration or data error is not retried)"
            )
            undone = (
                "the workspace was rolled back to its last good state"
                if snapshot
                else f"its worktree was discarded; the workspace of {store_root} was not touched"
            )
            raise StageFailed(
                f"vistune run failed at stage '{stage}' {tries}; {undone}. Cause: {exc}", retryable=retryable
            ) from exc
        raise
    return overrides, states


def _snapshot(root: Path, isolated: bool) -> Snapshot | None:
    """The shared workspace as the run found it (rollback point); None in a throwaway worktree."""
    if isolated:
        return None
    snapshot = Snapshot(root)
    snapshot.take()
    return snapshot


def _give_workspace_back(snapshot: Snapshot, experiment: str, logger) -> None:
    """After a run with form values: params.yaml, dvc.lock and outputs back as the run found them, so
    the next run with empty fields uses those params. The run's own results stay in its DVC
    experiment (`dvc exp apply <name>`), the DVC cache and the MLflow registry."""
    snapshot.restore(logger.info, persistent=True)
    where = (
        f"DVC experiment `{experiment}` (`dvc exp apply {experiment}` brings them in)"
        if experiment
        else "the DVC cache and MLflow only (no experiment was saved)"
    )
    logger.info("this run's params and outputs are kept in %s; the workspace is as before the run", where)


def _gate_event(reg: dict) -> None:
    """The register stage's gate ran in DVC's subprocess: its champion move is sent from here."""
    if reg.get("promoted") and not reg.get("reused") and reg.get("champion_before") != reg.get("version"):
        events.champion_changed(
            events.ChampionChange(
                str(reg.get("model_name")),
                reg.get("champion_before"),
                str(reg["version"]),
                "gate",
                str(reg.get("reason", "")),
                f"flow:{flow_run.name}",
            ),
            emitter="train-pipeline",
        )


def _check_trigger(trigger: dict | None, repo: str, logger) -> tuple[dict, str | None]:
    """({"started_by": ...}, None), or (.., why the event is ignored) for a malformed event or another model.
    The report of a triggered run says what started it (a markdown artifact and the run's result)."""
    if not trigger:
        return {}, None
    from prefect.artifacts import create_markdown_artifact

    from flows.triggers import check_trigger, describe
    from vistune.config import load_params

    line = describe(trigger)
    why = check_trigger(trigger, load_params(Path(repo) / "params.yaml").register.model_name)
    if why:
        logger.warning("ignored the event that triggered this run, no retrain: %s", why)
    else:
        logger.info("started by %s", line)
    create_markdown_artifact(
        markdown=f"# What started this run\n\n{line}\n\n"
        + (
            f"**Ignored, no retrain:** {why}\n"
            if why
            else "The event is under Events in the Prefect UI (its id is above).\n"
        ),
        key="vistune-trigger",
        description="the event whose deployment trigger started this run",
    )
    return {"started_by": line}, why


@flow(name="train-pipeline", log_prints=True)
def train_pipeline(
    params: PipelineParams = PipelineParams(),  # noqa: B008 (never mutated; the UI form shows it)
    repo: str = str(REPO),
    force: bool = False,
    save_experiment: bool = True,
    workspace: Workspace = "shared",
    trigger: dict | None = None,
) -> dict:
    """Run every stage of dvc.yaml in order through DVC, record the DVC experiment, publish a summary.

    Args:
        params: values for this run, written into params.yaml as `dvc exp run --set-param` would; a field
            left as shown keeps the workspace's params.yaml value
        repo: the vistune repository (DVC workspace, MLflow store) the run works in
        force: rerun every stage even when DVC says it is up to date (`dvc repro --force`)
        save_experiment: save the run as a DVC experiment named after the flow run (`dvc exp show`)
        workspace: `shared` runs in the repository itself, one run at a time; `isolated` runs in a
            throwaway git worktree of HEAD, so parallel runs do not wait for each other
        trigger: set by a deployment trigger (flows/triggers.py): the event that started this run; leave empty
    """
    logger = get_run_logger()
    started_by, ignored = _check_trigger(trigger, repo, logger)
    if ignored:
        return {**started_by, "ignored_trigger": ignored}
    events.install()  # an approval's champion move, in this process
    experiment = experiment_name(str(flow_run.name or ""))
    isolated = workspace == "isolated"
    store_root = str(Path(repo).resolve()) if isolated else ""
    outside = flag_outside_changes(repo)  # an alias moved behind vistune's back: one line each
    with run_workspace(Path(repo), workspace, logger) as root:
        work = str(root)
        snapshot = _snapshot(root, isolated)
        overrides, states = _run_stages(
            dvc_stages(root),
            params,
            work,
            force,
            experiment,
            logger,
            snapshot,
            store_root,
            fit_recipe=True,
            reread=REREAD_ON_EVENT if trigger else (),
        )
        saved = record_experiment(work, experiment, repo) if save_experiment else ""
        pushed = push_outputs(work)
        summary = publish_summary(work, saved or experiment, isolated or bool(overrides))
        if overrides and snapshot:
            _give_workspace_back(snapshot, saved, logger)
    _gate_event(summary.get("registration") or {})
    if (summary.get("registration") or {}).get("pending_approval"):  # outside the lock: a waiting run blocks nobody
        summary["approval"] = await_approval(summary["registration"], repo)
    summary.update(
        outside_changes=outside,
        stages=states,
        overrides=overrides,
        experiment=saved,
        pushed_to=pushed,
        workspace=workspace,
        flow_run={"id": str(flow_run.id), "name": flow_run.name},
        **started_by,
    )
    return summary


@flow(name="validate-only", log_prints=True)
def validate_only(data_source: str | None = None, repo: str = str(REPO)) -> dict:
    """Ingest and validate a data source without training: a cheap data-quality check.

    Args:
        data_source: sklearn:digits, torchvision:<Dataset>, a CSV manifest, an archive or an ImageFolder
            path; left as shown, the workspace's params.yaml `data.source`
        repo: the vistune repository (DVC workspace) the check runs in
    """
    logger = get_run_logger()
    with workspace_lock(Path(repo), logger):
        snapshot = _snapshot(Path(repo), False)
        overrides, states = _run_stages(
            ("ingest", "validate"),
            PipelineParams(data_source=data_source),
            repo,
            False,
            "",
            logger,
            snapshot,
            emitter="validate-only",
        )
        summary = read_json(Layout(Path(repo)).validation_summary)
        if overrides:
            _give_workspace_back(snapshot, "", logger)
    return {"stages": states, "summary": summary}


if __name__ == "__main__":
    result = train_pipeline(force="--force" in sys.argv[1:], save_experiment="--no-exp" not in sys.argv[1:])
    print(
        json.dumps({k: result[k] for k in ("flow_run", "experiment", "stages", "registration")}, indent=2, default=str)
    )
