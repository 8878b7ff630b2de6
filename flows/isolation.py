"""An isolated workspace per pipeline run: a git worktree of HEAD on the repository's DVC cache.

Runs in the repository's own workspace take turns (one params.yaml, one dvc.lock: see
`flows.pipeline.workspace_lock`). An isolated run instead works in `git worktree add --detach`
of HEAD under `<repo>/.dvc/tmp/runs/<run id>`:

- its own params.yaml, dvc.lock and outputs, so two runs (two workers) train at the same time
  and the main workspace's files are never touched;
- the main repository's DVC cache and remotes (written into the worktree's `.dvc/config.local`),
  so `dvc checkout` restores what HEAD's dvc.lock names, unchanged stages are skipped, and the
  outputs of the run land in the shared cache;
- git refs shared with the main repository, so its `dvc exp save` is listed by `dvc exp show`
  there and `dvc exp apply <name>` brings its results into the main workspace.

The worktree is removed when the run ends, failed or not. Git and DVC operations that write
state shared by all worktrees (the worktree list, the stash `dvc exp save` goes through) take
`repo_git_lock` one at a time; they last seconds, the stages in between run in parallel.
"""

from __future__ import annotations

import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock

from flows.dvc_cli import dvc_output, run_dvc

RUNS_DIR = Path(".dvc") / "tmp" / "runs"


def git(args: list[str], cwd: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`git {' '.join(args)}` failed in {cwd}: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


@contextmanager
def repo_git_lock(repo: Path) -> Iterator[None]:
    """Shared git/DVC state of `repo` and its worktrees changed by one process at a time."""
    lock_dir = repo / ".dvc" / "tmp"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / "vistune-git.lock"), timeout=600):
        yield


def _dvc(args: list[str], cwd: Path) -> str:
    proc = dvc_output(args, cwd)
    if proc.returncode != 0:
        raise RuntimeError(f"`dvc {' '.join(args)}` failed in {cwd}: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def share_dvc_config(repo: Path, worktree: Path) -> None:
    """The worktree's `.dvc/config.local`: the main repo's cache dir, remote URLs and default remote.

    Read with `dvc config --list` in the main repo, which resolves a relative `cache.dir` or remote
    URL against it (relative to the worktree they would point elsewhere). Remote credentials are
    not copied: workers get them from the environment or the global DVC config. The CLI keeps
    the flow process free of DVC's Python API, as every other DVC call here.
    """
    conf = dict(line.split("=", 1) for line in _dvc(["config", "--list"], repo).splitlines() if "=" in line)
    shared = {"cache.dir": conf.get("cache.dir") or str(repo / ".dvc" / "cache")}
    shared |= {key: url for key, url in conf.items() if key.startswith("remote.") and key.endswith(".url")}
    if conf.get("core.remote"):
        shared["core.remote"] = conf["core.remote"]
    for key, value in shared.items():
        _dvc(["config", "--local", key, value], worktree)


def remove_worktree(repo: Path, path: Path) -> None:
    """`git worktree remove --force`, and whatever is left of the directory (ignored outputs)."""
    with repo_git_lock(repo):
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=repo, capture_output=True)
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=repo, capture_output=True)


@contextmanager
def isolated_workspace(repo: Path, run_id: str, log: Callable[[str], None] = print) -> Iterator[Path]:
    """A checked-out worktree of `repo`'s HEAD for one run; yields its path, removes it afterwards."""
    repo = repo.resolve()
    path = repo / RUNS_DIR / run_id
    path.parent.mkdir(parents=True, exist_ok=True)
    with repo_git_lock(repo):
        git(["worktree", "add", "--detach", str(path), "HEAD"], repo)
    try:
        commit = git(["rev-parse", "--short", "HEAD"], path).strip()
        log(f"isolated workspace: git worktree of {repo} at {commit} in {path} (main workspace untouched)")
        share_dvc_config(repo, path)
        if (path / "dvc.lock").is_file():
            run_dvc(["checkout", "--allow-missing"], path, log=log)
        yield path
    finally:
        remove_worktree(repo, path)
        log(f"isolated workspace {path} removed")
