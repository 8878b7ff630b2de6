"""The protected champion, seen from a flow run: one warning line when an alias was set behind
vistune's back (e.g. in the MLflow UI), found by comparing the registry with the alias history."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task


@task(task_run_name="check-aliases")
def flag_outside_changes(repo: str) -> list[str]:
    """Warn (one line per alias) about `champion`/`challenger` changes the alias history does not
    hold; never fails the run. A store that does not exist yet is not created here."""
    from integrations import history, tracking
    from vistune.config import load_params

    try:
        cfg = load_params(Path(repo) / "params.yaml").register
        uri = tracking.resolve_tracking_uri(cfg, Path(repo).resolve())
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
            return []
        client, _ = tracking.open_registry(cfg, Path(repo).resolve())
        lines = [d.line(cfg.model_name) for d in history.unrecorded_changes(client, cfg.model_name)]
    except Exception as exc:  # a bad params.yaml or a server that is down: the stages report it properly
        get_run_logger().warning(
            "could not compare the registry's aliases with their history: %s",
            (str(exc).splitlines() or [type(exc).__name__])[0][:200],
        )
        return []
    for line in lines:
        get_run_logger().warning(line)
    return lines
