"""The isolated workspace of a flow run: a real git worktree on a real DVC repo (no Prefect server).

A one-stage DVC repo is enough: the worktree is created at HEAD with its outputs checked out
from the main cache, uses the main repo's cache and remotes, saves experiments the main repo
lists, is removed afterwards (also when the run fails), and never changes the main workspace.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.isolation import RUNS_DIR, isolated_workspace, repo_git_lock, stage_run_files
from tests.conftest import tree_hash

BIN = Path(sys.executable).parent

DVC_YAML = """stages:
  echo:
    cmd: python -c "import yaml; print(yaml.safe_load(open('params.yaml'))['a'])" > out.txt
    params: [a]
    outs: [out.txt]
"""


def _run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", DVC_NO_ANALYTICS="1")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}"
    return proc.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """git + DVC repo, one stage built and committed, a local remote given by a relative path."""
    root = tmp_path / "main"
    root.mkdir()
    (root / "params.yaml").write_text("a: 1\n")
    (root / "dvc.yaml").write_text(DVC_YAML)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    _run(["git", "init", "-q"], root)
    _run(["dvc", "init", "-q"], root)
    _run(["dvc", "remote", "add", "-d", "store", "../remote"], root)
    _run(["dvc", "repro", "-q"], root)
    _run(git + ["add", "-A"], root)
    _run(git + ["commit", "-qm", "init"], root)
    return root


def _worktrees(repo: Path) -> list[str]:
    return [
        line.split(" ", 1)[1]
        for line in _run(["git", "worktree", "list", "--porcelain"], repo).splitlines()
        if line.startswith("worktree ")
    ]


def _workspace_hash(repo: Path) -> str:
    return tree_hash(repo, ignore=(".git", ".dvc/tmp", ".dvc/cache"))


def test_worktree_at_head_on_the_main_cache_and_removed_after(repo: Path):
    before = _workspace_hash(repo)
    with isolated_workspace(repo, "run-1", log=lambda _: None) as path:
        assert path == repo.resolve() / RUNS_DIR / "run-1"
        assert str(path) in _worktrees(repo)
        assert (path / "out.txt").read_text() == "1\n"  # checked out from the main cache, not re-run
        assert _run(["dvc", "cache", "dir"], path).strip() == str(repo / ".dvc" / "cache")
        assert _run(["dvc", "remote", "list"], path).split() == ["store", str(repo.parent / "remote"), "(default)"]
        (path / "params.yaml").write_text("a: 2\n")
        _run(["dvc", "repro", "-q"], path)
        _run(["dvc", "exp", "save", "--name", "exp-run-1"], path)
        _run(["dvc", "push", "-q"], path)
    assert not path.exists()
    assert _worktrees(repo) == [str(repo)]
    assert _workspace_hash(repo) == before  # params.yaml, dvc.lock, out.txt of the main workspace
    assert "exp-run-1" in _run(["dvc", "exp", "list", "--name-only"], repo).split()
    assert len(list((repo.parent / "remote").rglob("*"))) > 0  # pushed to the main repo's remote


def test_a_worktree_stages_nothing_itself_and_its_experiment_holds_the_run(repo: Path):
    """DVC's autostage is off in a run's worktree (two worktrees staging one blob at once raced on the shared
    object store); `stage_run_files` stages the run's dvc.lock under the git lock and the experiment holds it."""
    head_lock = _run(["git", "show", "HEAD:dvc.lock"], repo)
    with isolated_workspace(repo, "run-2", log=lambda _: None) as path:
        (path / "params.yaml").write_text("a: 2\n")
        _run(["dvc", "repro", "-q"], path)
        assert _run(["git", "diff", "--cached", "--name-only"], path) == ""  # dvc repro staged nothing
        with repo_git_lock(repo):
            stage_run_files(path)
        assert _run(["git", "diff", "--cached", "--name-only"], path).split() == ["dvc.lock"]
        _run(["dvc", "exp", "save", "--name", "exp-run-2"], path)
        run_lock = (path / "dvc.lock").read_text()
    ref = next(
        line.split()[-1]
        for line in _run(["git", "for-each-ref", "refs/exps"], repo).splitlines()
        if line.endswith("/exp-run-2")
    )
    saved = _run(["git", "show", f"{ref}:dvc.lock"], repo)
    assert saved == run_lock != head_lock and "a: 2" in saved


def test_failed_run_removes_its_worktree_and_only_its_own(repo: Path):
    before = _workspace_hash(repo)
    with isolated_workspace(repo, "a", log=lambda _: None) as a:
        with pytest.raises(RuntimeError, match="stage broke"):
            with isolated_workspace(repo, "b", log=lambda _: None) as b:
                assert set(_worktrees(repo)) == {str(repo), str(a), str(b)}  # two runs at once
                (b / "params.yaml").write_text("a: 3\n")
                (b / "stray.txt").write_text("untracked")
                raise RuntimeError("stage broke")
        assert not b.exists() and set(_worktrees(repo)) == {str(repo), str(a)}
        assert (a / "out.txt").read_text() == "1\n"
    assert _worktrees(repo) == [str(repo)]
    assert _workspace_hash(repo) == before


def test_isolated_stage_registers_in_the_main_store(tmp_path: Path, monkeypatch, mlflow_cfg):
    import dataclasses

    from integrations import tracking

    cfg = dataclasses.replace(mlflow_cfg, tracking_uri="sqlite:///mlflow/mlflow.db", artifact_root="mlflow/artifacts")
    main, worktree = tmp_path / "main", tmp_path / "main" / RUNS_DIR / "r"
    monkeypatch.setattr(tracking, "_USER_TRACKING_URI", None)  # a user's MLFLOW_TRACKING_URI would win
    monkeypatch.delenv("VISTUNE_STORE_ROOT", raising=False)
    assert tracking.resolve_tracking_uri(cfg, worktree) == f"sqlite:///{worktree / 'mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("VISTUNE_STORE_ROOT", str(main))
    assert tracking.resolve_tracking_uri(cfg, worktree) == f"sqlite:///{main / 'mlflow' / 'mlflow.db'}"
    assert tracking.lock_dir(cfg, worktree) == main / "mlflow"
    http = dataclasses.replace(cfg, tracking_uri="http://127.0.0.1:5000")
    assert tracking.lock_dir(http, worktree) == main / "mlflow"


RUN_AND_HANG = """
import sys, time
from pathlib import Path
from flows.isolation import isolated_workspace
with isolated_workspace(Path(sys.argv[1]), sys.argv[2], log=lambda _: None) as path:
    print(path, flush=True)
    time.sleep(600)
"""


def _start_runs(repo: Path, *run_ids: str) -> list[tuple[subprocess.Popen, Path]]:
    """Isolated runs, each in its own process parked inside its worktree: [(process, worktree)]."""
    root = Path(__file__).resolve().parents[2]
    env = dict(
        os.environ, PYTHONPATH=str(root), PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", DVC_NO_ANALYTICS="1"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RUN_AND_HANG, str(repo), run_id],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for run_id in run_ids
    ]
    started = []
    for proc, run_id in zip(procs, run_ids):
        line = proc.stdout.readline().strip()
        assert line, f"run {run_id} did not start: {proc.stderr.read()[-2000:]}"
        started.append((proc, Path(line)))
    return started


def test_next_run_removes_worktrees_of_killed_runs_but_never_a_live_one(repo: Path):
    from flows.isolation import remove_stale_worktrees, repo_git_lock

    (dead, dead_path), (live, live_path) = _start_runs(repo, "killed", "live")
    orphan = None
    try:
        dead.kill()  # SIGKILL mid-run: no finally, no cleanup
        dead.wait(timeout=30)
        assert dead_path.is_dir() and str(dead_path) in _worktrees(repo)
        orphan = subprocess.Popen(["sleep", "120"], cwd=dead_path)  # a stage the dead worker started
        with repo_git_lock(repo):
            assert remove_stale_worktrees(repo, log=lambda _: None) == []  # still in use: kept
        assert set(_worktrees(repo)) == {str(repo), str(dead_path), str(live_path)}
        orphan.kill()
        orphan.wait(timeout=30)
        with isolated_workspace(repo, "next", log=lambda _: None) as nxt:
            assert not dead_path.exists()
            assert set(_worktrees(repo)) == {str(repo), str(live_path), str(nxt)}
            assert (live_path / "out.txt").read_text() == "1\n"  # the live run's worktree is untouched
        assert live.poll() is None and set(_worktrees(repo)) == {str(repo), str(live_path)}
        live.kill()
        live.wait(timeout=30)
        with repo_git_lock(repo):
            assert remove_stale_worktrees(repo, log=lambda _: None) == [live_path]
        assert _worktrees(repo) == [str(repo)]
        assert list((repo / RUNS_DIR).iterdir()) == []  # no lock files left behind either
    finally:
        for proc in (dead, live, orphan):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
