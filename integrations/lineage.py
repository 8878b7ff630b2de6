"""Lineage stamped on every run and model version, and the way back from a version to its inputs.

Facts (keys in `integrations.tags`, each tagged once): `vistune.lineage.*` — git SHA and dirty
files, the resolved params (md5 of their JSON; the full params are the run artifact
`lineage/params.yaml`, and inline when short), the data manifest's sha256, the DVC experiment and
Prefect flow run (id, name, URL), the Python/torch versions — plus `vistune.dvc.<stage>:<out>`,
the md5 of every stage output (the registering stage's own outputs hashed as written).
`vistune lineage <version>` prints them with the commands that rebuild that exact model.

"Dirty" has one definition here (`dirty_files`), used by `register` and by every lineage tag.
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

from integrations import dvcfiles, tags as T
from vistune import runtime
from vistune.errors import VistuneError
from vistune.io import sha256_file
from vistune.layout import Layout

TAG = T.LINEAGE
INLINE_PARAMS_MAX = 4500  # tag values hold 5000 characters on sqlite
# Files a pipeline run itself rewrites: their content is recorded (params, dvc.lock hashes), so
# a change to them alone does not make the source "dirty".
IGNORED_FOR_DIRTY = ("params.yaml", "dvc.lock")


def _git(root: Path, *args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None


def git_commit(root: Path) -> str:
    return (_git(root, "rev-parse", "HEAD") or "").strip() or "unknown"


def dirty_files(root: Path) -> list[str]:
    """Tracked files with uncommitted changes, minus params.yaml, dvc.lock, DVC stage outputs and the
    .gitignore files DVC itself edits beside those outputs (staged by `core.autostage`)."""
    out = _git(root, "status", "--porcelain", "--untracked-files=no")
    if out is None:
        return []  # not a git checkout: nothing to compare against
    outs = [o.rstrip("/") for o in dvcfiles.declared_outs(root)]
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
        raise VistuneError(
            f"{root}: git tree has uncommitted changes ({shown}); commit them so the model's "
            f"lineage names real source, or set register.allow_dirty: true in params.yaml"
        )
    return dirty


def run_context() -> dict[str, str]:
    """The DVC experiment and Prefect flow run this process runs for (exported by flows/; DVC's own
    `dvc exp run` exports DVC_EXP_NAME), '' when run by hand."""
    return {
        "dvc_experiment": os.environ.get("VISTUNE_DVC_EXPERIMENT") or os.environ.get("DVC_EXP_NAME", ""),
        "prefect_flow_run_id": os.environ.get("VISTUNE_PREFECT_FLOW_RUN_ID", ""),
        "prefect_flow_run_name": os.environ.get("VISTUNE_PREFECT_FLOW_RUN_NAME", ""),
    }


def run_name() -> str | None:
    """The MLflow run's name: the DVC experiment's (= the Prefect flow run's), so one name finds the
    run in all three tools; None (MLflow picks one) for a run outside any experiment or flow."""
    ctx = run_context()
    return ctx["dvc_experiment"] or ctx["prefect_flow_run_name"] or None


def params_json(params: dict) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)


def prefect_url(run_id: str) -> str:
    """The flow run's page: PREFECT_UI_URL, else the API URL minus its `/api` suffix."""
    ui = os.environ.get("PREFECT_UI_URL") or os.environ.get("PREFECT_API_URL", "").removesuffix("/").removesuffix(
        "/api"
    )
    return f"{ui.rstrip('/')}/runs/flow-run/{run_id}" if ui and run_id else ""


def facts(params: dict, manifest: Path, root: Path, dirty: list[str], stage: str = "register") -> dict[str, str]:
    """Every lineage tag of one registration (strings under the tag-size limit, empty facts left out).

    Call it after `stage` wrote its outputs: their hashes are those of the files it wrote."""
    import torch

    text = params_json(params)
    ctx = run_context()
    values = {
        "git_commit": git_commit(root),
        "git_dirty": "true" if dirty else "false",
        "git_dirty_files": ", ".join(dirty)[:1000],
        "params_md5": hashlib.md5(text.encode()).hexdigest(),
        "params": text if len(text) <= INLINE_PARAMS_MAX else "",
        "data_manifest_sha256": sha256_file(manifest) if manifest.is_file() else "",
        # the reviewer's relabel / exclude decisions ingest applied (vistune.data.label_overrides)
        "label_overrides_sha256": sha256_file(overrides)
        if (overrides := Layout(root).label_overrides).is_file()
        else "",
        **ctx,
        "prefect_flow_run_url": prefect_url(ctx["prefect_flow_run_id"]),
        "python": platform.python_version(),
        "torch": torch.__version__,
        # what the stages computed with (runtime.cpu_kernels / runtime.threads, applied by stages/cli.py)
        "cpu_kernels": runtime.active_cpu_kernels(),
        "cpu_threads": str(torch.get_num_threads()),
    }
    out = {T.lineage(k): v for k, v in values.items() if v}
    out |= {T.dvc_out(st, path): md5 for (st, path), md5 in dvcfiles.out_hashes(root, written_by=stage).items()}
    return out


def version_tags(all_facts: dict[str, str]) -> dict[str, str]:
    """The lineage a model version carries itself (`VERSION_LINEAGE`: commit and data hash); every
    fact is on its run, so the registry's version row stays short."""
    return {T.lineage(f): all_facts[T.lineage(f)] for f in T.VERSION_LINEAGE if T.lineage(f) in all_facts}


def version_lineage(client, mv) -> dict[str, str]:
    """Every lineage fact of model version `mv`: its run's lineage tags (inline params left out: they
    are the run's `lineage/params.yaml`), then what older versions carry themselves (a JSON tag and
    their own lineage tags)."""
    run_tags = client.get_run(mv.run_id).data.tags if mv.run_id else {}
    facts = {
        k: v for k, v in run_tags.items() if (k.startswith(TAG) or k.startswith(T.DVC)) and k != T.lineage("params")
    }
    try:
        facts |= json.loads(mv.tags.get(T.LINEAGE_JSON) or "{}")
    except ValueError:  # cut at the tag limit: the run's lineage/lineage.json has it whole
        pass
    return facts | {k: v for k, v in mv.tags.items() if k.startswith(TAG) or k.startswith(T.DVC)}


def version_params(client, name: str, version: str) -> dict:
    """The resolved params a version was trained with: inline tag, else the run's params artifact."""
    mv = client.get_model_version(name, version)
    inline = mv.tags.get(T.lineage("params"))
    if inline:
        return json.loads(inline)
    if not mv.run_id:
        raise ValueError(f"v{version} has no run and no params tag; it was not registered by `vistune`")
    with tempfile.TemporaryDirectory() as tmp:
        return yaml.safe_load(Path(client.download_artifacts(mv.run_id, "lineage/params.yaml", tmp)).read_text())


def describe(client, name: str, version: str) -> str:
    """Text for `vistune lineage`: each lineage fact once, then the commands that rebuild the model
    (the git commit appears only there, in `git checkout`)."""
    mv = client.get_model_version(name, version)
    tags = dict(sorted(version_lineage(client, mv).items()))
    if not any(k.startswith(TAG) for k in tags):
        raise ValueError(f"v{version} of {name!r} carries no lineage tags (registered before lineage was recorded)")
    shown = {T.lineage("params"), T.lineage("git_commit")}
    lines = [f"{name} v{version} (run {mv.run_id})"]
    lines += [
        f"  {k.removeprefix(TAG) if k.startswith(TAG) else k.removeprefix(T.PREFIX)}: {v}"
        for k, v in tags.items()
        if k not in shown
    ]
    experiment = tags.get(T.lineage("dvc_experiment"))
    lines += ["", "reproduce:"]
    if experiment:
        lines.append(f"  dvc exp apply {experiment} && dvc repro")
    lines += [
        f"  git checkout {tags.get(T.lineage('git_commit'), 'unknown')}   # the commit it was trained from",
        f"  vistune lineage {version} --params-out params.yaml   # the exact params it was trained with",
        "  dvc repro",
    ]
    if tags.get(T.lineage("git_dirty")) == "true":
        lines.append(
            f"  note: registered from a dirty tree ({tags.get(T.lineage('git_dirty_files'), '')}); "
            f"those edits are not in that commit"
        )
    return "\n".join(lines)
