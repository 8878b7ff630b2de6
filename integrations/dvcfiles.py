"""dvc.yaml and dvc.lock, read in one place: declared outputs, lock entries, recorded hashes.

Lineage (integrations/lineage.py) and the flows' workspace snapshot and cache key
(flows/workspace.py) all go through here, so they agree on what a stage writes and what DVC recorded.
Read-only; DVC itself writes both files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterator

import yaml


def _load(path: Path) -> dict:
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def yaml_stages(root: Path) -> dict[str, dict]:
    """Stage name -> its dvc.yaml body ({} when there is no dvc.yaml)."""
    return _load(root / "dvc.yaml").get("stages", {}) or {}


def lock_stages(root: Path) -> dict[str, dict]:
    """Stage name -> its dvc.lock entry ({} before the first `dvc repro`)."""
    return _load(root / "dvc.lock").get("stages", {}) or {}


def lock_entry(root: Path, stage: str) -> dict[str, Any] | None:
    return lock_stages(root).get(stage)


def out_entries(body: dict) -> Iterator[tuple[str, dict]]:
    """(path, options) of every output a dvc.yaml stage declares: outs, metrics and plots."""
    for kind in ("outs", "metrics", "plots"):
        for entry in body.get(kind, []) or []:
            if isinstance(entry, str):
                yield entry, {}
            else:
                ((path, opts),) = entry.items()
                yield str(path), opts or {}


def declared_outs(root: Path, stage: str | None = None) -> list[str]:
    """Every output path dvc.yaml declares (of one stage, or of all)."""
    stages = yaml_stages(root)
    bodies = [stages.get(stage, {})] if stage else list(stages.values())
    return [path for body in bodies for path, _ in out_entries(body)]


def uncached_outputs(root: Path) -> list[str]:
    """Outputs DVC neither caches nor persists: the ones `dvc checkout` cannot bring back."""
    return [
        path
        for body in yaml_stages(root).values()
        for path, opts in out_entries(body)
        if opts.get("cache") is False and not opts.get("persist")
    ]


def persistent_outputs(root: Path) -> list[str]:
    """Uncached outputs DVC keeps across runs (`persist: true`): checkpoints, the decode cache."""
    return [
        path
        for body in yaml_stages(root).values()
        for path, opts in out_entries(body)
        if opts.get("cache") is False and opts.get("persist")
    ]


def file_md5(path: Path) -> str:
    """The md5 DVC 3 records for a file (of its raw bytes)."""
    return hashlib.md5(path.read_bytes()).hexdigest() if path.is_file() else ""


def out_hashes(root: Path, written_by: str | None = None) -> dict[tuple[str, str], str]:
    """(stage, out path) -> md5 recorded in dvc.lock.

    `written_by`: the stage running right now. DVC records its outputs only after it exits, so the
    lock still holds the previous run's; the files it just wrote are hashed instead."""
    hashes = {
        (stage, out["path"]): out.get("md5", "")
        for stage, body in lock_stages(root).items()
        for out in body.get("outs", []) or []
    }
    if written_by:
        hashes = {k: v for k, v in hashes.items() if k[0] != written_by}
        hashes |= {
            (written_by, path): file_md5(root / path)
            for path in declared_outs(root, written_by)
            if (root / path).is_file()
        }
    return hashes
