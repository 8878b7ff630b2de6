"""A DVC remote (a local directory): push after a run, pull on a fresh clone reproduces the model
byte for byte, and a corrupted cache object is found and refetched from the remote.

Found by experiment with DVC 3.67: DVC itself does NOT re-hash local cache objects — after
corrupting one, `dvc status -c` says "in sync", `dvc fetch`/`dvc pull --force` say "up to date" and
`dvc checkout --relink` copies the bad bytes into the workspace. Cache objects are named by their
md5, so the check is recomputing md5 of each object; the repair is deleting the bad object,
`dvc fetch` (refetched from the remote) and `dvc checkout --relink`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_git_repo, tiny_params_dict, write_params

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
MODEL = "data/model/model.pt"


def _run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-4000:]}"
    return proc.stdout + proc.stderr


def _git(root: Path, *args: str) -> str:
    return _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], root)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def corrupted_cache_objects(repo: Path) -> list[Path]:
    """Every object under .dvc/cache/files/md5 whose bytes no longer hash to its name."""
    root = repo / ".dvc" / "cache" / "files" / "md5"
    return [
        p
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".dir") and p.parent.name + p.name != _md5(p)
    ]


def _lock_md5(repo: Path, path: str) -> str:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return next(o["md5"] for body in lock["stages"].values() for o in body.get("outs", []) if o["path"] == path)


@pytest.fixture(scope="module")
def pushed(tmp_path_factory) -> tuple[Path, Path]:
    """One `dvc repro train` in a temp git repo, pushed to a local remote with the flow's own task. No
    label-issue search in validate (a backbone's features and K folds): these tests are about the model's bytes."""
    from prefect.logging import disable_run_logger

    from flows.pipeline import default_remote, push_outputs

    base = tmp_path_factory.mktemp("dvcremote")
    repo = tiny_git_repo(
        base / "vistune",
        prepare=lambda root: write_params(
            root / "params.yaml", tiny_params_dict(validate={"label_issue_folds": 0, "on_lookalike": "off"})
        ),
    )
    _run(["dvc", "repro", "train"], repo)
    with disable_run_logger():
        assert default_remote(repo) == "" and push_outputs.fn(str(repo)) == ""  # no remote: nothing to do
        _run(["dvc", "remote", "add", "-d", "shared", str(base / "remote")], repo)
        assert push_outputs.fn(str(repo)) == "shared"
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "trained, remote configured")
    clone = base / "clone"
    _run(["git", "clone", "-q", str(repo), str(clone)], base)
    return repo, clone


def test_fresh_clone_pull_reproduces_the_model_exactly(pushed):
    repo, clone = pushed
    assert not (clone / MODEL).exists()
    _run(["dvc", "pull", "--with-deps", "train"], clone)  # only stages up to train ran here
    assert _md5(clone / MODEL) == _md5(repo / MODEL) == _lock_md5(repo, MODEL)
    # only outputs DVC does not cache (checkpoints, decode cache) may be missing on a fresh clone
    status = _run(["dvc", "status", "--with-deps", "train"], clone)
    assert "data/model" not in status and "data/prepared" not in status and "data/raw" not in status, status
    assert "in sync" in _run(["dvc", "status", "-c", "--with-deps", "train"], clone)


def test_corrupted_cache_object_is_detected_and_refetched(pushed):
    _, clone = pushed
    if not (clone / MODEL).exists():
        _run(["dvc", "pull", "--with-deps", "train"], clone)
    good = _lock_md5(clone, MODEL)
    obj = clone / ".dvc" / "cache" / "files" / "md5" / good[:2] / good[2:]
    assert obj.is_file() and corrupted_cache_objects(clone) == []
    obj.chmod(0o644)
    with open(obj, "r+b") as f:  # bit rot in the middle of the weights
        f.seek(obj.stat().st_size // 2)
        f.write(b"\x00CORRUPT\x00")
    assert corrupted_cache_objects(clone) == [obj]

    obj.unlink()  # repair: drop the bad object, refetch it, relink the workspace
    _run(["dvc", "fetch", "--with-deps", "train"], clone)
    _run(["dvc", "checkout", "--relink", "--with-deps", "train"], clone)
    assert corrupted_cache_objects(clone) == []
    assert _md5(obj) == good and _md5(clone / MODEL) == good
