"""Lineage tags on a real registered version, `vistune lineage`, and the dirty-tree refusal."""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from app import cli
from integrations import lineage, registry, tracking
from stages import register as register_stage
from vistune.config import to_dict
from vistune.errors import VistuneError
from vistune.io import sha256_file

from tests.conftest import REPO
from tests.integrations.registry_helpers import copy_layout, params_with, write_params_file

NAME = "vistune-classifier"


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _repo(root: Path) -> str:
    """A committed git tree: a source file, params.yaml, the real dvc.lock/dvc.yaml; data/ ignored."""
    (root / "src.py").write_text("x = 1\n")
    (root / "params.yaml").write_text("a: 1\n")
    shutil.copy(REPO / "dvc.lock", root / "dvc.lock")
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    (root / ".gitignore").write_text("data/\nmlflow.db\nartifacts/\n")
    (root / "labels.csv").write_text("path,label\ntrain/a/0.png,b\n")  # a reviewer's decision (label_overrides)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "init")
    return _git(root, "rev-parse", "HEAD")


def test_version_carries_lineage_and_lineage_reproduces_params(trained_tiny, mlflow_cfg, tmp_path, monkeypatch, capsys):
    lay = copy_layout(trained_tiny, tmp_path / "repo", macro_f1=0.5)
    sha = _repo(lay.root)
    monkeypatch.setenv("VISTUNE_PREFECT_FLOW_RUN_ID", "0b5e-run-id")
    monkeypatch.setenv("VISTUNE_PREFECT_FLOW_RUN_NAME", "brisk-heron")
    monkeypatch.setenv("VISTUNE_DVC_EXPERIMENT", "brisk-heron")
    monkeypatch.setenv("PREFECT_UI_URL", "http://127.0.0.1:4200")
    params = params_with(mlflow_cfg, allow_dirty=False)
    (lay.root / "params.yaml").write_text("a: 2\n")  # params.yaml edits alone are recorded, not "dirty"
    receipt = register_stage.run(params, lay)
    client, _ = tracking.open_registry(mlflow_cfg, tmp_path)
    version_tags = client.get_model_version(NAME, receipt["version"]).tags
    mv = client.get_model_version(NAME, receipt["version"])
    tags = lineage.version_lineage(client, mv)  # the version's two lineage tags + every fact on its run
    t = lineage.TAG
    assert tags[f"{t}git_commit"] == sha and tags[f"{t}git_dirty"] == "false"
    assert not {"vistune.git_commit", "vistune.run_id", "vistune.dvc_experiment"} & set(tags)  # each fact once
    assert tags[f"{t}data_manifest_sha256"] == sha256_file(lay.manifest)
    assert tags[f"{t}label_overrides_sha256"] == sha256_file(lay.root / "labels.csv")
    assert tags[f"{t}prefect_flow_run_id"] == "0b5e-run-id"
    assert tags[f"{t}prefect_flow_run_url"] == "http://127.0.0.1:4200/runs/flow-run/0b5e-run-id"
    assert tags[f"{t}python"] == platform.python_version() and tags[f"{t}torch"] == torch.__version__
    # the CPU kernel level and threads the registering process computed with (runtime.*)
    assert tags[f"{t}cpu_kernels"] == torch.backends.cpu.get_cpu_capability()
    assert tags[f"{t}cpu_threads"] == str(torch.get_num_threads())
    lock = yaml.safe_load((REPO / "dvc.lock").read_text())["stages"]
    for stage, body in lock.items():  # the dvc.lock hash of every earlier stage's output ...
        for out in body.get("outs", []):
            if stage != "register":
                assert tags[f"vistune.dvc.{stage}:{out['path']}"] == out.get("md5", "")
    for out in ("data/registry/registration.json", "data/registry/gate_report.md"):  # ... and of the files it wrote
        written = hashlib.md5((lay.root / out).read_bytes()).hexdigest()
        assert tags[f"vistune.dvc.register:{out}"] == written
    committed = {o["path"]: o["md5"] for o in lock["register"]["outs"]}  # the placeholder dvc.lock still names
    assert tags["vistune.dvc.register:data/registry/registration.json"] != committed["data/registry/registration.json"]
    assert len(tags[f"{t}params_md5"]) == 32
    run = client.get_run(receipt["run_id"])
    assert run.info.run_name == "brisk-heron"  # named like the DVC experiment / Prefect flow run
    run_lineage = {k: v for k, v in run.data.tags.items() if k.startswith((t, "vistune.dvc."))}
    assert run_lineage == tags | {f"{t}params": run_lineage[f"{t}params"]}  # every fact on the run, params inline
    artifact = json.loads(
        Path(client.download_artifacts(receipt["run_id"], "lineage/lineage.json", str(tmp_path))).read_text()
    )
    assert artifact == run_lineage
    # the version itself: a short set a registry reader can scan (one line each in the versions table)
    assert set(version_tags) == {
        "vistune.gate",
        "vistune.test_macro_f1",
        "vistune.card",
        "vistune.model_sha256",
        f"{t}git_commit",
        f"{t}data_manifest_sha256",
    }
    assert version_tags["vistune.gate"] == "promoted" and all(len(v) <= 80 for v in version_tags.values())
    # the gate's details and the identity digests moved to the run; merged back where they are read
    facts = registry.version_facts(client, NAME, receipt["version"])
    assert facts["vistune.decision_reason"].startswith("no champion yet") and len(facts["vistune.params_sha256"]) == 64
    assert "vistune.last_action" not in version_tags  # in the description's first line, not a tag

    params_out = tmp_path / "reproduced.yaml"
    args = ["--params", str(write_params_file(tmp_path / "p.yaml", mlflow_cfg)), "--root", str(tmp_path)]
    capsys.readouterr()
    assert cli.main([*args, "lineage", receipt["version"], "--params-out", str(params_out)]) == 0
    out = capsys.readouterr().out
    assert f"git checkout {sha}" in out and "dvc repro" in out and "dvc exp apply brisk-heron" in out
    assert out.count(sha) == 1  # the commit is printed once
    assert "prefect_flow_run_url: http://127.0.0.1:4200/runs/flow-run/0b5e-run-id" in out
    assert yaml.safe_load(params_out.read_text()) == to_dict(params)
    # the params artifact is where a version's params come from (no inline tag on a version)
    assert f"{t}params" not in version_tags
    assert lineage.version_params(client, NAME, receipt["version"]) == to_dict(params)

    # uncommitted source: refused before anything is logged, with the file named and the fix
    (lay.root / "src.py").write_text("x = 2\n")
    with pytest.raises(VistuneError, match=r"uncommitted changes \(src.py\).*register.allow_dirty: true"):
        register_stage.run(params, lay)
    assert len(client.search_model_versions(f"name='{NAME}'")) == 1
    assert cli.main([*args, "lineage", "99"]) == 2


def test_dirty_files_ignore_params_lock_and_dvc_outs(tmp_path):
    root = tmp_path
    (root / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "s": {
                        "cmd": "true",
                        "outs": [{"reports/out.json": {"cache": False}}],
                        "metrics": ["reports/m.json"],
                    }
                }
            }
        )
    )
    (root / "reports").mkdir()
    for f in ("reports/out.json", "reports/m.json", "params.yaml", "dvc.lock", "code.py"):
        (root / f).write_text("1")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "init")
    for f in ("reports/out.json", "reports/m.json", "params.yaml", "dvc.lock"):
        (root / f).write_text("2")
    (root / "reports" / ".gitignore").write_text("/out.json\n")  # what DVC writes and autostages
    (root / ".gitignore").write_text("*.log\n")  # the user's own: not DVC's
    _git(root, "add", "reports/.gitignore", ".gitignore")
    assert lineage.dirty_files(root) == [".gitignore"]
    _git(root, "reset", "-q", ".gitignore")
    assert lineage.dirty_files(root) == [] and lineage.check_clean(root, allow_dirty=False) == []
    (root / "code.py").write_text("2")
    assert lineage.dirty_files(root) == ["code.py"]
    assert lineage.check_clean(root, allow_dirty=True) == ["code.py"]
    with pytest.raises(VistuneError, match="code.py"):
        lineage.check_clean(root, allow_dirty=False)
    assert lineage.prefect_url("") == ""
