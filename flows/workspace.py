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
from typing import Any, Iterator

import yaml

from flows.dvc_cli import dvc_output, run_dvc

SNAPSHOT_DIR = Path(".dvc") / "tmp" / "vistune-snapshot"


def _out_entries(stage: dict) -> Iterator[tuple[str, dict]]:
    for kind in ("outs", "metrics", "plots"):
        for entry in stage.get(kind, []) or []:
            if isinstance(entry, str):
                yield entry, {}
            else:
                (path, opts), = entry.items()
                yield path, opts or {}


def uncached_outputs(repo: Path) -> list[str]:
    """Outputs DVC does not cache and does not persist: the ones `dvc checkout` cannot bring back."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text()).get("stages", {})
    return [path for stage in stages.values() for path, opts in _out_entries(stage)
            if opts.get("cache") is False and not opts.get("persist")]


class Snapshot:
    """Copies of params.yaml, dvc.lock and uncached outputs, so a failed run can be undone."""

    def __init__(self, repo: Path):
        self.repo = repo
        self.dir = repo / SNAPSHOT_DIR
        self.files = ["params.yaml", "dvc.lock", *uncached_outputs(repo)]

    def take(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        present = []
        for rel in self.files:
            src = self.repo / rel
            if src.is_file():
                (self.dir / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, self.dir / rel)
                present.append(rel)
        (self.dir / "present.json").write_text(json.dumps(present))

    def restore(self, log=print) -> None:
        """Put every snapshot file back (removing ones the run created), then `dvc checkout`."""
        present = set(json.loads((self.dir / "present.json").read_text()))
        for rel in self.files:
            dst = self.repo / rel
            if rel in present:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(self.dir / rel, dst)
            elif dst.is_file():
                dst.unlink()
        if (self.repo / "dvc.lock").is_file():
            run_dvc(["checkout", "--force", "--allow-missing"], self.repo, log=log)
        log(f"workspace rolled back to its state before this run: params.yaml, dvc.lock and outputs of {self.repo}")


def _lock_entry(repo: Path, stage: str) -> dict[str, Any] | None:
    lock = repo / "dvc.lock"
    if not lock.is_file():
        return None
    return (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).get(stage)


def stage_cache_key(repo: Path, stage: str) -> str | None:
    """DVC's own view of a stage as a Prefect cache key: None unless `dvc status <stage>` is clean.

    When the stage is up to date its dvc.lock entry (command, dep/param/out hashes) is the
    key, so a Prefect task with this key would only have repeated DVC's own no-op.
    """
    entry = _lock_entry(repo, stage)
    if entry is None:
        return None
    proc = dvc_output(["status", stage, "--json"], repo)
    if proc.returncode != 0 or json.loads(proc.stdout or "{}"):
        return None
    blob = json.dumps({"repo": str(repo.resolve()), "stage": stage, "lock": entry}, sort_keys=True, default=str)
    return f"dvc-{stage}-{hashlib.sha256(blob.encode()).hexdigest()[:20]}"
