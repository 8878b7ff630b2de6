"""The one retry rule of every Prefect task: retry a crash, a kill or a timeout; never a user's mistake.

A stage that refused its config or data, or could not write its outputs, exits 2 (`stages/cli.py`) and
surfaces as a `StageFailed` that is not retryable; in-process work (batch scoring) raises `VistuneError`
or `ValueError` for the same kinds of mistakes. Running either again changes nothing.
"""

from __future__ import annotations

from flows.dvc_cli import StageFailed
from vistune.errors import VistuneError


def is_user_error(exc: BaseException) -> bool:
    if isinstance(exc, StageFailed):
        return not exc.retryable
    return isinstance(exc, (VistuneError, ValueError))


def retry_unless_user_error(task, task_run, state) -> bool:
    """Prefect's `retry_condition_fn`: False (fail at once) for a user's mistake, True otherwise."""
    try:
        state.result()
    except BaseException as exc:
        return not is_user_error(exc)
    return True
