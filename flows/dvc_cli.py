"""Running DVC from flows: one subprocess per stage, output streamed into the Prefect log."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# `mlflow.set_tracking_uri()` writes MLFLOW_TRACKING_URI into os.environ; a stage must see the user's
# value (or none), not whatever URI an earlier flow in this process opened
_USER_MLFLOW_URI = os.environ.get("MLFLOW_TRACKING_URI")

REPO = Path(__file__).resolve().parent.parent


def stages(repo: Path = REPO) -> tuple[str, ...]:
    """The pipeline's stages in `dvc.yaml`'s order: the flow runs what DVC declares, no second list."""
    from integrations.dvcfiles import yaml_stages

    return tuple(yaml_stages(Path(repo)))


def __getattr__(name: str):
    if name == "STAGES":  # the stages of this checkout's dvc.yaml, read when asked for (not at import)
        return stages()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# stages/cli.py exits 2 on a configuration or data error and on an output it cannot write:
# running it again changes nothing, unlike a crash or a kill
USER_ERROR_EXIT = 2


class StageFailed(RuntimeError):
    """A DVC stage exited non-zero; the message carries the stage's last lines of output.

    `retryable` is False when the stage's own command exited with USER_ERROR_EXIT.
    """

    def __init__(self, message: str, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


def dvc_executable() -> str:
    """The `dvc` beside this interpreter (the project venv), else the one on PATH."""
    local = Path(sys.executable).with_name("dvc")
    return str(local) if local.exists() else (shutil.which("dvc") or "dvc")


def dvc_output(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """A quiet `dvc` command whose output the caller reads (status, config, remote): nothing logged."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([dvc_executable(), *args], cwd=cwd, capture_output=True, text=True, env=env)


_WARNED: dict[str, set[str]] = {}  # per flow run: the DVC warnings already logged
ONCE = ("WARNING:", "Use `dvc push`")  # lines every `dvc repro` repeats, logged once per flow run


def warn_once(log, run_key: str):
    """`log`, minus the DVC warnings (`ONCE`) this flow run (`run_key`) has already logged: every
    `dvc repro` of a run repeats the same ones ("'data/compress/models' is empty.", "Use `dvc push` ...")."""
    seen = _WARNED.setdefault(run_key, set())

    def once(line: str) -> None:
        if line.startswith(ONCE):
            if line in seen:
                return
            seen.add(line)
        log(line)

    return once


def run_dvc(args: list[str], repo: Path, log=print, env: dict[str, str] | None = None) -> str:
    base = dict(os.environ)
    base.pop("MLFLOW_TRACKING_URI", None)
    if _USER_MLFLOW_URI is not None:
        base["MLFLOW_TRACKING_URI"] = _USER_MLFLOW_URI
    env = {**base, **(env or {})}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("DVC_NO_ANALYTICS", "1")
    proc = subprocess.Popen(
        [dvc_executable(), *args],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if "\r" in line:  # progress-bar redraws: keep the last state only
            line = line.rsplit("\r", 1)[-1]
        lines.append(line)
        if line:
            log(line)
    code = proc.wait()
    if code != 0:
        tail = "\n".join(lines[-15:])
        stage_exit = re.findall(r"exited with (-?\d+)", tail)
        retryable = not (stage_exit and int(stage_exit[-1]) == USER_ERROR_EXIT)
        raise StageFailed(f"`dvc {' '.join(args)}` failed with exit code {code}:\n{tail}", retryable=retryable)
    return "\n".join(lines)
