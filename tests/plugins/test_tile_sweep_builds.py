"""bench/sma_tile_sweep.cu compiles (no GPU needed): it instantiates tile shapes the launcher does
not use, so the kernel's static checks (shared memory per block, mask loads per thread) and its
template interface are exercised beyond the library build, and the sweep stays ready for the next
GPU session."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from mild_export.engine.trt_shim import REPO_ROOT


def test_the_tile_sweep_compiles(tmp_path):
    if shutil.which("nvcc") is None:
        pytest.skip("compiling the sweep needs nvcc on PATH")
    binary = tmp_path / "sma_tile_sweep"
    result = subprocess.run(
        [
            "nvcc",
            "-std=c++17",
            "-O1",
            "-arch=sm_90a",
            "-DMILD_SMA_SM90A",  # the wgmma kernel's shapes too
            "-Iplugins/sma",
            "bench/sma_tile_sweep.cu",
            "plugins/sma/sma_kernel.cu",
            "plugins/sma/sma_kernel_sm90.cu",
            "-o",
            str(binary),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert binary.stat().st_size > 0
