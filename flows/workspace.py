"""The DVC workspace seen from a flow: stage cache keys, and undoing a failed run.

DVC deletes a stage's outputs before it runs the stage, so a stage that keeps failing would
leave the workspace without them. A `Snapshot` taken when a run starts (params.yaml, dvc.lock
and the small `cache: false` outputs DVC cannot restore) lets the flow roll back; cached
outputs come back from the DVC cache with `dvc checkout`. Persistent outputs
(checkpoints, decode cache) are left alone so a retried run resumes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from flows.dvc_cli import dvc_output, run_dvc
from integrations.dvcfiles import lock_entry, persistent_outputs, uncached_outputs

SNAPSHOT_DIR = Path(".dvc") / "tmp" / "vistune-snapshot"


class Snapshot:
    """Copies of params.yaml, dvc.lock and uncached outputs, so a failed run can be undone.

    Persistent outputs (checkpoints, decode cache) are copied too but put back only on request
    (`restore(persistent=True)`, when a finished run gives the workspace back): after a failure they
    stay as they are, so a retried run resumes."""

    def __init__(self, repo: Path):
        self.repo = repo
        self.dir = repo / SNAPSHOT_DIR
        self.files = ["params.yaml", "dvc.lock", *uncached_outputs(repo)]
        self.persistent = persistent_outputs(repo)

    def take(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        present = []
        for rel in [*self.files, *self.persistent]:
            src, dst = self.repo / rel, self.dir / rel
            if src.is_file() or src.is_dir():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copytree(src, dst) if src.is_dir() else shutil.copy2(src, dst)
                present.append(rel)
        (self.dir / "present.json").write_text(json.dumps(present))

    def restore(self, log=print, persistent: bool = False) -> None:
        """Put every snapshot file back (removing ones the run created), then `dvc checkout`; said before
        it is done, so checkout's own lines (`M data/model/model.pt`) read as part of the rollback."""
        log(
            f"rolling the workspace back to its state before this run: params.yaml, dvc.lock and outputs of {self.repo}"
        )
        present = set(json.loads((self.dir / "present.json").read_text()))
        for rel in [*self.files, *(self.persistent if persistent else [])]:
            src, dst = self.dir / rel, self.repo / rel
            if dst.is_dir():
                shutil.rmtree(dst)
            elif dst.is_file():
                dst.unlink()
            if rel in present:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copytree(src, dst) if src.is_dir() else shutil.copy2(src, dst)
        if (self.repo / "dvc.lock").is_file():
            run_dvc(["checkout", "--force", "--allow-missing"], self.repo, log=log)
        log("workspace rolled back")


def stage_cache_key(repo: Path, stage: str) -> str | None:
    """DVC's own view of a stage as a Prefect cache key: None unless `dvc status <stage>` is clean.

    When the stage is up to date its dvc.lock entry (command, dep/param/out hashes) is the
    key, so a Prefect task with this key would only have repeated DVC's own no-op.
    """
    entry = lock_entry(repo, stage)
    if entry is None:
        return None
    proc = dvc_output(["status", stage, "--json"], repo)
    if proc.returncode != 0 or json.loads(proc.stdout or "{}"):
        return None
    blob = json.dumps({"repo": str(repo.resolve()), "stage": stage, "lock": entry}, sort_keys=True, default=str)
    return f"dvc-{stage}-{hashlib.sha256(blob.encode()).hexdigest()[:20]}"
