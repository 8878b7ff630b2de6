"""The CPU kernel pin (`runtime.cpu_kernels`): applied before torch starts, in a real stage process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, tiny_params_dict, write_params
from vistune.config import load_params
from vistune.errors import ConfigError
from vistune.runtime import kernel_env

# a fresh interpreter, as DVC starts a stage: import the stages package (it pins), then ask torch
PROBE = (
    "import sys; sys.argv = ['stage', *sys.argv[1:]]; import stages, torch; "
    "print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads())"
)


def _has_avx2() -> bool:
    return "avx2" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else False


def _capability(params: Path | None, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    args = ["--params", str(params)] if params else []
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=REPO, env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return proc.stdout.split()[0]


def test_kernel_env_pins_x86_only():
    assert kernel_env("avx2", "x86_64") == {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "OPENBLAS_CORETYPE": "Haswell",
    }
    assert kernel_env("native", "x86_64") == {}
    assert kernel_env("avx2", "aarch64") == {}  # ARM has no AVX levels: its own kernels run


@pytest.mark.skipif(not _has_avx2(), reason="needs an x86-64 CPU with AVX2")
def test_a_stage_process_runs_the_params_kernel_level(tmp_path):
    native = write_params(tmp_path / "native.yaml", tiny_params_dict(runtime={"cpu_kernels": "native"}))
    unpinned = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert _capability(None) == "AVX2"  # the committed params.yaml: portable kernels
    assert _capability(native) == unpinned  # native: whatever this CPU offers
    assert _capability(native, ATEN_CPU_CAPABILITY="default") == "DEFAULT"  # an explicit environment wins


# the same fresh interpreter, asking numpy's OpenBLAS which kernels it loaded
BLAS_PROBE = (
    "import sys; sys.argv = ['stage', *sys.argv[1:]]; import stages, numpy; "
    "from threadpoolctl import threadpool_info; "
    "print(sorted({i['architecture'] for i in threadpool_info() if i['internal_api'] == 'openblas'}))"
)


@pytest.mark.skipif(not _has_avx2(), reason="needs an x86-64 CPU with AVX2")
def test_a_stage_process_runs_openblas_at_the_params_level():
    clean = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}

    def architectures(**env: str) -> str:
        cmd = [sys.executable, "-c", BLAS_PROBE]
        return subprocess.run(cmd, cwd=REPO, env={**clean, **env}, capture_output=True, text=True, check=True).stdout

    assert architectures().strip() == "['Haswell']"  # pinned before numpy loads, whatever this CPU is
    assert architectures(OPENBLAS_CORETYPE="Sandybridge").strip() == "['Sandybridge']"  # an explicit one wins


def test_the_stage_harness_sets_threads_and_says_so(tmp_path):
    params = write_params(tmp_path / "p.yaml", tiny_params_dict(runtime={"threads": 1}))
    proc = subprocess.run(
        [sys.executable, "-m", "stages.ingest", "--params", str(params), "--root", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "kernels, 1 threads" in proc.stdout


def test_an_older_params_file_is_told_where_threads_went(tmp_path):
    old = write_params(tmp_path / "old.yaml", tiny_params_dict(train={"threads": 0}))
    with pytest.raises(ConfigError, match=r"train\.threads is now runtime\.threads"):
        load_params(old)
