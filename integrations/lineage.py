"""Lineage stamped on every model version, and the way back from a version to its inputs.

Tags (`vistune.lineage.*` plus the existing `vistune.git_commit` / `vistune.dvc.<stage>:<out>`):
git SHA and dirtiness, `dvc.lock` hash of every stage, the resolved params (md5 of their JSON;
the full params are the run artifact `lineage/params.yaml`, and inline when short), the data
manifest's sha256, the Prefect flow run (id, name, URL) and the Python/torch versions.
`vistune lineage <version>` prints them with the commands that rebuild that exact model.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import yaml

from vistune.errors import VistuneError
from vistune.io import sha256_file

TAG = "vistune.lineage."
INLINE_PARAMS_MAX = 4500  # tag values hold 5000 characters on sqlite
# Files a pipeline run itself rewrites: their content is recorded (params, dvc.lock hashes), so
# a change to them alone does not make the source "dirty".
IGNORED_FOR_DIRTY = ("params.yaml", "dvc.lock")


def _git(root: Path, *args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None


def dvc_outs(root: Path) -> list[str]:
    """Every path dvc.yaml declares as a stage output (outs, metrics, plots)."""
    f = root / "dvc.yaml"
    if not f.is_file():
        return []
    stages = (yaml.safe_load(f.read_text()) or {}).get("stages", {})
    return [next(iter(item)) if isinstance(item, dict) else str(item)
            for body in stages.values() for section in ("outs", "metrics", "plots") for item in body.get(section, [])]


def dirty_files(root: Path) -> list[str]:
    """Tracked files with uncommitted changes, minus params.yaml, dvc.lock, DVC stage outputs and the
    .gitignore files DVC itself edits beside those outputs (staged by `core.autostage`)."""
    out = _git(root, "status", "--porcelain", "--untracked-files=no")
    if out is None:
        return []  # not a git checkout: nothing to compare against
    outs = [o.rstrip("/") for o in dvc_outs(root)]
    out_parents = {str(Path(o).parent) for o in outs}  # where DVC writes the .gitignore entries of its outs
    files = []
    for line in out.splitlines():
        path = line[3:].split(" -> ")[-1].strip().strip('"')
        if path in IGNORED_FOR_DIRTY or any(path == o or path.startswith(o + "/") for o in outs):
            continue
        if Path(path).name == ".gitignore" and str(Path(path).parent) in out_parents:
            continue
        files.append(path)
    return files


def check_clean(root: Path, allow_dirty: bool) -> list[str]:
    """Refuse (VistuneError) to register from uncommitted source unless `register.allow_dirty`."""
    dirty = dirty_files(root)
    if dirty and not allow_dirty:
        shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
        raise VistuneError(f"{root}: git tree has uncommitted changes ({shown}); commit them so the model's "
                           f"lineage names real source, or set register.allow_dirty: true in params.yaml")
    return dirty


def params_json(params: dict) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)


def prefect_url(run_id: str) -> str:
    """The flow run's page: PREFECT_UI_URL, else the API URL minus its `/api` suffix."""
    ui = os.environ.get("PREFECT_UI_URL") or os.environ.get("PREFECT_API_URL", "").removesuffix("/").removesuffix("/api")
    return f"{ui.rstrip('/')}/runs/flow-run/{run_id}" if ui and run_id else ""


def version_tags(params: dict, manifest: Path, root: Path, dirty: list[str]) -> dict[str, str]:
    """The lineage tags of one model version (strings, each under the tag-size limit)."""
    import torch

    commit = (_git(root, "rev-parse", "HEAD") or "unknown").strip() or "unknown"
    text = params_json(params)
    run_id = os.environ.get("VISTUNE_PREFECT_FLOW_RUN_ID", "")
    tags = {
        "git_commit": commit,
        "git_dirty": "true" if dirty else "false",
        "git_dirty_files": ", ".join(dirty)[:1000],
        "params_md5": hashlib.md5(text.encode()).hexdigest(),
        "params": text if len(text) <= INLINE_PARAMS_MAX else "",
        "data_manifest_sha256": sha256_file(manifest) if manifest.is_file() else "",
        "prefect_flow_run_id": run_id,
        "prefect_flow_run_name": os.environ.get("VISTUNE_PREFECT_FLOW_RUN_NAME", ""),
        "prefect_flow_run_url": prefect_url(run_id),
        "dvc_experiment": os.environ.get("VISTUNE_DVC_EXPERIMENT", ""),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    return {f"{TAG}{k}": v for k, v in tags.items() if v}


def version_params(client, name: str, version: str) -> dict:
    """The resolved params a version was trained with: inline tag, else the run's params artifact."""
    mv = client.get_model_version(name, version)
    inline = mv.tags.get(f"{TAG}params")
    if inline:
        return json.loads(inline)
    if not mv.run_id:
        raise ValueError(f"v{version} has no run and no params tag; it was not registered by `vistune`")
    with tempfile.TemporaryDirectory() as tmp:
        return yaml.safe_load(Path(client.download_artifacts(mv.run_id, "lineage/params.yaml", tmp)).read_text())


def describe(client, name: str, version: str) -> str:
    """Text for `vistune lineage`: every lineage tag and the commands that rebuild the model."""
    mv = client.get_model_version(name, version)
    tags = {k: v for k, v in sorted(mv.tags.items())
            if k.startswith(TAG) or k.startswith("vistune.dvc.") or k in ("vistune.git_commit", "vistune.run_id")}
    if not any(k.startswith(TAG) for k in tags):
        raise ValueError(f"v{version} of {name!r} carries no lineage tags (registered before lineage was recorded)")
    lines = [f"{name} v{version} (run {mv.run_id})"]
    lines += [f"  {k.removeprefix(TAG) if k.startswith(TAG) else k.removeprefix('vistune.')}: {v}"
              for k, v in tags.items() if k != f"{TAG}params"]
    sha = tags.get(f"{TAG}git_commit", "unknown")
    experiment = mv.tags.get(f"{TAG}dvc_experiment") or mv.tags.get("vistune.dvc_experiment")
    lines += ["", "reproduce:"]
    if experiment:
        lines.append(f"  dvc exp apply {experiment} && dvc repro")
    lines += [f"  git checkout {sha}",
              f"  vistune lineage {version} --params-out params.yaml   # the exact params it was trained with",
              "  dvc repro"]
    if tags.get(f"{TAG}git_dirty") == "true":
        lines.append(f"  note: registered from a dirty tree ({tags.get(f'{TAG}git_dirty_files', '')}); "
                     f"those edits are not in {sha[:12]}")
    return "\n".join(lines)
