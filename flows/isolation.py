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

The worktree is removed when the run ends, failed or not. A run that never reaches its end (a
worker killed with SIGKILL, a machine reboot) is cleaned up by the next isolated run: each run
holds an exclusive `flock` on `<runs>/<run id>.lock` for its whole life (the kernel drops it when
the process dies, however it dies), so a worktree whose lock is free and in which no process is
working (`/proc/<pid>/cwd`: a stage the dead worker started may still be running) is stale and
removed, then `git worktree prune`d. The lock is local to the host: keep the workers of one
repository on one machine, as the pool set-up does. Git and DVC operations that write state
shared by all worktrees (the worktree list, the stash `dvc exp save` goes through) take
`repo_git_lock` one at a time; they last seconds, the stages in between run in parallel.
"""

from __future__ import annotations

import fcntl
import os
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
    """The worktree's `.dvc/config.local`: the main repo's cache dir, remote URLs and default remote,
    and `core.autostage` off. DVC stages through dulwich, which writes a git object behind an O_EXCL lock
    file: two worktrees staging the same blob at once (their stages end together) failed with EEXIST on
    the shared object store. `stage_run_files` stages the run's files with git, under `repo_git_lock`.

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
    shared["core.autostage"] = "false"
    for key, value in shared.items():
        _dvc(["config", "--local", key, value], worktree)


def stage_run_files(worktree: Path) -> None:
    """`git add` what DVC's autostage would have staged in a run's worktree: dvc.lock and the `.gitignore`s
    of its outputs. The caller holds `repo_git_lock`."""
    paths = ["dvc.lock"] if (worktree / "dvc.lock").is_file() else []
    git(["add", "--all", "--", *paths, ":(glob)**/.gitignore"], worktree)


def remove_worktree(repo: Path, path: Path, owner: int | None = None, lock_path: Path | None = None) -> None:
    """`git worktree remove --force`, and whatever is left of the directory (ignored outputs); then the
    run's owner lock (`owner` fd on `lock_path`) is dropped."""
    with repo_git_lock(repo):
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=repo, capture_output=True)
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=repo, capture_output=True)
        if owner is not None and lock_path is not None:
            _drop_owner_lock(owner, lock_path)


def _take_owner_lock(lock_path: Path) -> int | None:
    """An fd holding an exclusive flock on `lock_path` (created if missing), or None if another
    process holds it. The kernel releases it when the holder dies, so a free lock = a dead owner."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _drop_owner_lock(fd: int, lock_path: Path) -> None:
    lock_path.unlink(missing_ok=True)  # under repo_git_lock: no sweeper holds it open meanwhile
    os.close(fd)


def _processes_in(path: Path) -> list[int]:
    """Pids whose working directory is inside `path` (Linux /proc; processes we may not inspect are skipped)."""
    root, found = str(path), []
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if entry.name.isdigit():
            try:
                cwd = os.readlink(f"/proc/{entry.name}/cwd")
            except OSError:
                continue
            if cwd == root or cwd.startswith(root + os.sep):
                found.append(int(entry.name))
    return found


def _registered_runs(repo: Path) -> set[Path]:
    runs = repo / RUNS_DIR
    listed = git(["worktree", "list", "--porcelain"], repo).splitlines()
    paths = {Path(line.split(" ", 1)[1]) for line in listed if line.startswith("worktree ")}
    return {p for p in paths if p.parent == runs}


def remove_stale_worktrees(repo: Path, log: Callable[[str], None] = print) -> list[Path]:
    """Remove run worktrees under `.dvc/tmp/runs` left by runs that died (owner lock free, no process
    working in them), then `git worktree prune`. The caller holds `repo_git_lock`. Returns the removed paths."""
    runs = repo / RUNS_DIR
    if not runs.is_dir():
        return []
    removed = []
    for path in sorted({p for p in runs.iterdir() if p.is_dir()} | _registered_runs(repo)):
        lock_path = runs / f"{path.name}.lock"
        fd = _take_owner_lock(lock_path)
        if fd is None:
            continue  # its run is alive
        try:
            busy = _processes_in(path)
            if busy:
                log(f"worktree {path} of a run that is gone is still in use by pid(s) {busy}; left for a later run")
                continue
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=repo, capture_output=True)
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                removed.append(path)
                log(f"removed stale worktree {path} (its run is no longer running)")
        finally:
            _drop_owner_lock(fd, lock_path)
    subprocess.run(["git", "worktree", "prune"], cwd=repo, capture_output=True)
    return removed


@contextmanager
def isolated_workspace(repo: Path, run_id: str, log: Callable[[str], None] = print) -> Iterator[Path]:
    """A checked-out worktree of `repo`'s HEAD for one run; yields its path, removes it afterwards.
    Stale worktrees of dead runs are removed first; this run's owner lock is held until the end."""
    repo = repo.resolve()
    path = repo / RUNS_DIR / run_id
    lock_path = path.parent / f"{run_id}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with repo_git_lock(repo):
        remove_stale_worktrees(repo, log)
        owner = _take_owner_lock(lock_path)
        if owner is None:
            raise RuntimeError(f"run {run_id} is already running in {path} (another process holds {lock_path})")
        try:
            git(["worktree", "add", "--detach", str(path), "HEAD"], repo)
        except BaseException:
            _drop_owner_lock(owner, lock_path)
            raise
    try:
        commit = git(["rev-parse", "--short", "HEAD"], path).strip()
        log(f"isolated workspace: git worktree of {repo} at {commit} in {path} (main workspace untouched)")
        share_dvc_config(repo, path)
        if (path / "dvc.lock").is_file():
            run_dvc(["checkout", "--allow-missing"], path, log=log)
        yield path
    finally:
        remove_worktree(repo, path, owner, lock_path)
        log(f"isolated workspace {path} removed")
