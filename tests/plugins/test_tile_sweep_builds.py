"""bench/sma_tile_sweep.cu compiles (no GPU needed): it instantiates tile shapes the launcher does
not use, so the kernel's static checks (shared memory per block, mask loads per thread) and its
template interface are exercised beyond the library build, and the sweep stays ready for the next
GPU session. Its options are read before it touches the GPU, so their errors show here too."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from mild_export.engine.trt_shim import REPO_ROOT

BAD_OPTIONS = [
    (["--shape", "3,10"], "--shape '3,10' must be four positive integers B,H,S,D"),
    (["--shape", "3,10,4096,60"], "--shape '3,10,4096,60' must be four positive integers"),
    (["--shape", "3,10,4096,128"], "--shape '3,10,4096,128' must be four positive integers B,H,S,D with D a"),
    (["--only"], "unknown or incomplete option '--only'"),
    (["--fast"], "unknown or incomplete option '--fast'"),
]


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
    for args, message in BAD_OPTIONS:
        run = subprocess.run([str(binary), *args], capture_output=True, text=True)
        assert run.returncode == 2, (args, run.stderr)
        assert run.stderr.startswith(f"sma_tile_sweep: {message}"), run.stderr
