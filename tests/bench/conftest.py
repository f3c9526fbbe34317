"""The bench tests' helper: the scripts under bench/ are files, not modules of a package."""

import importlib.util
import sys
from functools import cache
from types import ModuleType

import pytest

from mild_export.engine.trt_shim import REPO_ROOT


@cache
def load_bench_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # a dataclass of the script looks its module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def bench_script():
    """bench_script("inductor_kernels") is bench/inductor_kernels.py, loaded once."""
    return load_bench_script
