"""Shared test helpers: a tiny model whose MILD modules look trained, so parity tests can fail;
a model folder that holds only its UNet's configuration;
the SMA plugin library built once per session with CMake, and TensorRT loaded (plugin and engine
tests).

The library is configured into build/plugins for one architecture (sm_86) and rebuilt
incrementally on later sessions, so a re-run costs a no-op `cmake --build`.
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from mild_export.engine.trt_shim import DEFAULT_PLUGIN_BUILD_DIR, REPO_ROOT, TensorRT, plugin_library_path
from reference.config import ModelConfig
from reference.model import MildModel, load_model

TRAINED_MARKERS = ("lora_B", "lora_scale", "sma_alpha", "offsets.net.4")

requires_gpu = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU visible to torch (torch.cuda.is_available() is False)"
)


def make_trained_tiny(seed: int = 0) -> MildModel:
    """Tiny model with random LoRA B, scales, SMA alphas and E_trans output (all zero/one at init)."""
    model = load_model("tiny")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(marker in name for marker in TRAINED_MARKERS):
                p.copy_(torch.randn(p.shape, generator=g) * (0.3 if "lora_B" in name else 1.0))
    return model.eval()


def write_unet_config(folder: Path, **changes: object) -> Path:
    """A diffusers folder's unet/config.json alone (the tiny UNet's, with `changes`): enough for the
    commands to check image sides, not for the folder to load (no weights, no other parts), so a
    check made only after the load cannot pass a test that uses it."""
    (folder / "unet").mkdir(parents=True)
    unet = {**ModelConfig.from_name("tiny").unet, **changes}
    (folder / "unet" / "config.json").write_text(json.dumps(unet))
    return folder


def unet_inputs(
    model: MildModel, n: int, side: int, seed: int, timestep: float = 640.0
) -> dict[str, torch.Tensor]:
    """Random inputs of the UNet engine contract: n fg rows and one bg row on a side x side latent."""
    g = torch.Generator().manual_seed(seed)
    L, C = model.config.context_length, model.config.cross_attention_dim
    return {
        "sample_fg": torch.randn(n, 9, side, side, generator=g),
        "sample_bg": torch.randn(1, 9, side, side, generator=g),
        "mask_fg": (torch.rand(n, 1, side, side, generator=g) > 0.5).float(),
        "mask_bg": (torch.rand(1, 1, side, side, generator=g) > 0.3).float(),
        "context_fg": torch.randn(n, L, C, generator=g),
        "context_bg": torch.randn(1, L, C, generator=g),
        "timestep": torch.full((n + 1,), timestep),
    }


@pytest.fixture
def trained_tiny() -> MildModel:
    return make_trained_tiny()


# --- TensorRT: the plugin library and the module ----------------------------------------------------

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
