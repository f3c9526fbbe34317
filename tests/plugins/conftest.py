"""Fixtures for the plugin tests: the library built once per session with CMake, TensorRT loaded.

The library is configured into build/plugins for one architecture (sm_86) and rebuilt
incrementally on later sessions, so a re-run costs a no-op `cmake --build`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mild_export.engine.trt_shim import DEFAULT_PLUGIN_BUILD_DIR, REPO_ROOT, TensorRT, plugin_library_path

sys.path.insert(0, str(Path(__file__).parent))  # sma_graph helper

HEADERS = REPO_ROOT / "third_party" / "tensorrt" / "include"
TEST_ARCH = "86-real"


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")


@pytest.fixture(scope="session")
def plugin_library() -> Path:
    """Path of libmild_plugins.so, configured and built here if needed."""
    if shutil.which("cmake") is None or shutil.which("nvcc") is None:
        pytest.skip("building the plugin needs cmake and nvcc on PATH")
    if not (HEADERS / "NvInferRuntime.h").is_file():
        pytest.skip(f"TensorRT headers missing in {HEADERS}: run `bash scripts/setup-tensorrt-rtx.sh`")
    build = DEFAULT_PLUGIN_BUILD_DIR
    if not (build / "CMakeCache.txt").is_file():
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        _run(
            [
                "cmake",
                "-S",
                ".",
                "-B",
                str(build),
                *generator,
                f"-DCMAKE_CUDA_ARCHITECTURES={TEST_ARCH}",
                f"-DTensorRT_INCLUDE_DIR={HEADERS}",
            ]
        )
    _run(["cmake", "--build", str(build), "--parallel", "2"])
    path = plugin_library_path(build)
    assert path.is_file(), f"the build succeeded but {path} is missing"
    return path


@pytest.fixture(scope="session")
def trt() -> TensorRT:
    try:
        return TensorRT.load()
    except ImportError as exc:
        pytest.skip(f"{exc}")
