"""The CPU kernel level a stage runs at: the same bytes on every x86-64 machine, or the host's fastest.

PyTorch (ATen) and oneDNN pick their vector kernels from the CPU they start on: AVX-512 on a newer
server, AVX2 on an older one. The kernels sum floats in another order, so one `dvc repro` trains
another `model.pt` on each kind of CPU (measured: test accuracy 0.944 vs 0.955 on the demo). With
`runtime.cpu_kernels: avx2` (the default) both libraries are capped at AVX2, which every x86-64
server since 2013 has, and the committed `dvc.lock` is reproduced byte for byte; `native` lets
them use everything the CPU offers (benchmarks/RESULTS.md measures the difference).

numpy's and scipy's OpenBLAS do the same for the float work outside torch (the label-issue regression,
the look-alike PCA): an Intel AVX-512 server runs its SkylakeX kernels, an AMD or older Intel one its
Haswell (AVX2) kernels, and a borderline image can be flagged on one and not the other. The `avx2` level
pins OpenBLAS to its Haswell kernels as well.

All three read the cap once, from the environment, when they load, so it must be in `os.environ`
before torch or numpy is imported: `stages/__init__.py` applies it. On other architectures (aarch64)
and on CUDA the setting changes nothing.

No torch import at module level: this runs before torch exists.
"""

from __future__ import annotations

import os
import platform
import sys

from vistune.config import CpuKernels

# ATen's ATEN_CPU_CAPABILITY, oneDNN's ONEDNN_MAX_CPU_ISA and OpenBLAS's OPENBLAS_CORETYPE names per level
_CAPS = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Haswell"}}
_X86 = ("x86_64", "amd64", "i386", "i686")


def kernel_env(level: CpuKernels, machine: str | None = None) -> dict[str, str]:
    """The environment that caps torch, oneDNN and OpenBLAS at `level`; {} for `native` or a non-x86 CPU."""
    machine = (machine or platform.machine()).lower()
    return dict(_CAPS.get(level, {})) if machine in _X86 else {}


def pin_cpu_kernels(level: CpuKernels) -> bool:
    """Put `level`'s cap into os.environ; False when torch is already imported (too late to pin). numpy
    imported earlier keeps the OpenBLAS kernels it loaded (a stage process imports neither first).

    An explicit ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA or OPENBLAS_CORETYPE in the environment wins.
    """
    if "torch" in sys.modules:
        return False
    for key, value in kernel_env(level).items():
        os.environ.setdefault(key, value)
    return True


def active_cpu_kernels() -> str:
    """The kernel level torch dispatches to in this process, e.g. 'AVX2' or 'AVX512'."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def pin_holds(level: CpuKernels) -> bool:
    """Whether this process runs `level`'s kernels (any level holds for `native` and off x86)."""
    wanted = kernel_env(level).get("ATEN_CPU_CAPABILITY")
    return wanted is None or active_cpu_kernels().lower() in (wanted, "default")
