"""A disk that refuses bytes during `augment` / `train`: one clear line, exit 2, and the previous
outputs byte-identical (atomic writes). Tests run as root, where chmod blocks nothing, so a full
disk is simulated for real with RLIMIT_FSIZE in the stage's process (SIGXFSZ ignored, so the
write fails with an error instead of killing the process), and a file where a folder must be."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, tiny_params_dict, tree_hash, write_params
from vistune.layout import Layout


def _stage(stage: str, root: Path, params: Path, max_file_bytes: int | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:
        if max_file_bytes is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", f"stages.{stage}", "--params", str(params), "--root", str(root)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=600,
    )


def _copy(src: Layout, dest: Path) -> Layout:
    shutil.copytree(src.root, dest, ignore=shutil.ignore_patterns("checkpoints", "registry"))
    return Layout(dest)


def _one_clear_line(proc: subprocess.CompletedProcess, stage: str) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith(f"vistune {stage}: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "cannot write" in errors[0] and "check permissions/disk space" in errors[0]
    return errors[0]


def test_augment_on_a_full_disk_fails_clearly_and_keeps_previous_outputs(prepared_tiny, tmp_path):
    lay = _copy(prepared_tiny, tmp_path / "lay")
    params = write_params(tmp_path / "params.yaml", tiny_params_dict())
    before = tree_hash(lay.prepared)
    assert (lay.prepared / "train_images.npy").stat().st_size > 8192
    line = _one_clear_line(_stage("augment", lay.root, params, max_file_bytes=8192), "augment")
    assert str(lay.root.resolve() / "data") in line
    assert tree_hash(lay.prepared) == before  # old arrays intact, no temp file left behind


def test_augment_where_a_file_blocks_the_output_folder(prepared_tiny, tmp_path):
    lay = _copy(prepared_tiny, tmp_path / "lay")
    params = write_params(tmp_path / "params.yaml", tiny_params_dict())
    shutil.rmtree(lay.prepared)
    lay.prepared.write_text("not a folder")
    line = _one_clear_line(_stage("augment", lay.root, params), "augment")
    assert str(lay.prepared) in line
    assert lay.prepared.read_text() == "not a folder"


@pytest.mark.slow
def test_train_on_a_full_disk_fails_clearly_and_keeps_the_previous_model(trained_tiny, tmp_path):
    lay = _copy(trained_tiny, tmp_path / "lay")
    params = write_params(tmp_path / "params.yaml", tiny_params_dict())
    before = tree_hash(lay.model_dir)
    assert lay.model.stat().st_size > 1 << 20
    _one_clear_line(_stage("train", lay.root, params, max_file_bytes=1 << 20), "train")
    assert tree_hash(lay.model_dir) == before  # model.pt, history and metrics untouched; no half checkpoint
