"""The committed dvc.lock describes the committed code and params.

DVC's promise (a clone's `dvc repro` reproduces the committed metrics) holds only while every code
and params dep recorded in dvc.lock matches the working tree. This asks DVC itself (`dvc status`,
read-only; no `dvc repro`) and fails on any code, params or command change, so a change to stage
code ships with its rerun. Data deps and outputs are left out: a fresh clone has no data/ until
`dvc pull` or `dvc repro`.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flows.dvc_cli import dvc_output
from tests.conftest import REPO

FIX = "rerun the pipeline (`make demo` or `dvc repro`) and commit dvc.lock with the metrics and plots it wrote"


def stale_code_and_params(status: dict) -> list[str]:
    """`stage: dep` for every non-data dep, params key or command that differs from dvc.lock."""
    stale = []
    for stage, changes in status.items():
        for change in changes:
            if change == "changed command" or (isinstance(change, dict) and "changed command" in change):
                stale.append(f"{stage}: cmd")
            if not isinstance(change, dict):
                continue
            for dep, what in change.get("changed deps", {}).items():
                if isinstance(what, dict):  # params file: {section or key: "modified" | "new" | "deleted"}
                    stale += [f"{stage}: {dep}:{key} {state}" for key, state in sorted(what.items())]
                elif not dep.startswith("data/"):
                    stale.append(f"{stage}: {dep} {what}")
    return stale


def test_stale_detection_reads_dvc_status_json():
    status = {
        "train": [
            {
                "changed deps": {
                    "vistune/train": "modified",
                    "data/prepared": "deleted",
                    "params.yaml": {"train.epochs": "modified"},
                }
            },
            {"changed outs": {"data/model/model.pt": "not in cache"}},
        ],
        "ingest": ["changed command"],
        "evaluate": [{"changed outs": {"data/eval/metrics.json": "deleted"}}],
    }
    assert stale_code_and_params(status) == [
        "train: vistune/train modified",
        "train: params.yaml:train.epochs modified",
        "ingest: cmd",
    ]


def test_committed_lock_matches_code_and_params():
    proc = dvc_output(["status", "--json"], REPO)
    assert proc.returncode == 0, proc.stderr
    stale = stale_code_and_params(json.loads(proc.stdout or "{}"))
    shown = "\n  ".join(stale[:40]) + (f"\n  ... and {len(stale) - 40} more" if len(stale) > 40 else "")
    assert not stale, f"dvc.lock is older than the code/params it records ({len(stale)}):\n  {shown}\nFix: {FIX}"


def committed(path: str) -> str:
    """A file as the last commit has it: `make demo` rewrites the workspace's metrics, the commit stays."""
    proc = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_readme_figures_are_the_committed_metrics(tmp_path):
    from benchmarks.readme_figures import render

    metrics = json.loads(committed("data/eval/metrics.json"))
    assert render(metrics) in committed("README.md"), (
        "README.md's demo figures differ from data/eval/metrics.json; run `python benchmarks/readme_figures.py`"
    )
    # the generator itself: a stale block is reported by --check and rewritten without it
    (tmp_path / "data" / "eval").mkdir(parents=True)
    (tmp_path / "data" / "eval" / "metrics.json").write_text(json.dumps({**metrics, "test_accuracy": 0.5}))
    (tmp_path / "README.md").write_text("intro\n<!-- demo-figures:begin -->\nold\n<!-- demo-figures:end -->\nrest\n")
    cmd = [sys.executable, str(REPO / "benchmarks" / "readme_figures.py"), "--root", str(tmp_path)]
    assert subprocess.run([*cmd, "--check"], capture_output=True).returncode == 1
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    text = (tmp_path / "README.md").read_text()
    assert "test accuracy 0.5000" in text and text.startswith("intro\n") and text.endswith("\nrest\n")
    assert subprocess.run([*cmd, "--check"], capture_output=True).returncode == 0


def locked_md5(lock_text: str, stage: str, path: str) -> str:
    """The md5 `dvc.lock` records for one output of one stage."""
    import yaml

    outs = yaml.safe_load(lock_text)["stages"][stage]["outs"]
    return next(o["md5"] for o in outs if o["path"] == path)


def test_the_demo_reproduces_the_committed_model():
    """After `make demo` on any x86-64 machine, `data/model/model.pt` is the file the committed lock records.

    The kernel pin (`runtime.cpu_kernels: avx2`, fixed `runtime.threads`) is what makes this hold on an
    AVX-512 CPU as on the AVX2 one that wrote the lock. Skipped in a clone without demo outputs (CI) or
    whose training code or params differ from the commit (a change, not a reproduction)."""
    import hashlib

    model = REPO / "data" / "model" / "model.pt"
    if not model.is_file():
        pytest.skip("no demo output here: run `make demo` first")
    changed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "params.yaml", "vistune", "stages"], cwd=REPO)
    if changed.returncode != 0:
        pytest.skip("params or stage code differ from the commit: the lock describes another run")
    got = hashlib.md5(model.read_bytes()).hexdigest()
    assert got == locked_md5(committed("dvc.lock"), "train", "data/model/model.pt"), (
        "the demo trained another model than dvc.lock records; check runtime.cpu_kernels is avx2 and "
        "runtime.threads is unchanged in params.yaml"
    )
