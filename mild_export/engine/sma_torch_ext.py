"""The SMA plugin's CUDA kernel as a PyTorch extension (GPU tests, bench/ and `--sma kernel`).

Compiles plugins/sma/sma_kernel.cu and sma_kernel_sm90.cu, the very files the TensorRT plugin
links, with a small pybind11 binding, for the GPU torch sees. Needs nvcc and a CUDA build of
torch. Importing this module registers the `kernel` SMA form of `reference.sma`, so the PyTorch
reference can run the plugin's kernel where TensorRT cannot (mild-bench --sma kernel); it builds
on first use. The form is a torch custom op, so torch.compile keeps it as one opaque call instead
of breaking its graph.
"""

from __future__ import annotations

import functools
from types import ModuleType

import torch
from torch import Tensor

from mild_export.engine.trt_shim import REPO_ROOT
from mild_export.ops.schema import SMA
from reference import sma

SMA_DIR = REPO_ROOT / "plugins" / "sma"
FORMS = ("reference", "fold", "kernel")  # what `--sma` offers the PyTorch reference (TorchBackend)
# `sma_forward(..., pipeline=P)`, mild::sma::Pipeline: the launcher's choice, the mma.sync kernel with
# one or two K/V stages, Hopper's wgmma kernel
PIPELINES = {"auto": 0, "one-stage": 1, "two-stage": 2, "wgmma": 3}
# compute capabilities whose blocks get the shared memory two K/V stages need (sm_80, sm_90): the
# only GPUs where `pipeline=2` runs, and where the launcher takes it itself
TWO_STAGE_GPUS = ((8, 0), (9, 0))
SOURCES = [SMA_DIR / "torch_binding.cpp", SMA_DIR / "sma_kernel.cu", SMA_DIR / "sma_kernel_sm90.cu"]


@functools.cache
def load(verbose: bool = False) -> ModuleType:
    """Build (cached by torch under ~/.cache/torch_extensions) and import the extension."""
    if not torch.cuda.is_available():
        raise RuntimeError("the SMA kernel extension needs a CUDA build of torch and a GPU")
    from torch.utils.cpp_extension import load as load_extension

    major, minor = torch.cuda.get_device_capability()
    if major < 8:
        raise RuntimeError(
            f"the SMA kernel needs sm_80 or newer (mma.sync bf16), this GPU is sm_{major}{minor}"
        )
    return load_extension(
        name="mild_sma_ext",
        sources=[str(s) for s in SOURCES],
        extra_include_paths=[str(SMA_DIR)],
        extra_cflags=["-O3", "-std=c++17", *_wgmma_flags(major, minor)],
        extra_cuda_cflags=[
            "-O3",
            "-std=c++17",
            _gencode(major, minor),
            "-lineinfo",
            *_wgmma_flags(major, minor),
        ],
        verbose=verbose,
    )


def _gencode(major: int, minor: int) -> str:
    """SASS for this GPU; on sm_90 the arch-specific sm_90a, which has wgmma (and runs on sm_90 only)."""
    arch = f"{major}{minor}" + ("a" if (major, minor) == (9, 0) else "")
    return f"-gencode=arch=compute_{arch},code=sm_{arch}"


def _wgmma_flags(major: int, minor: int) -> list[str]:
    """MILD_SMA_SM90A tells the launcher (sma_kernel.cu) that sma_kernel_sm90.cu was compiled for
    sm_90a: elsewhere its kernel has no body, and the launcher never calls it."""
    return ["-DMILD_SMA_SM90A"] if (major, minor) == (9, 0) else []


def sma_forward(q, k, v, m_q, m_k, alpha, out=None, pipeline: str = "auto"):
    """out = SMA(q, k, v, m_q, m_k, alpha) by the fused kernel; `out`, if given, is written in place.
    `pipeline` (a PIPELINES key) forces a kernel: "auto" is the launcher's choice for this GPU."""
    if pipeline not in PIPELINES:
        raise ValueError(f"pipeline {pipeline!r}: choose one of {', '.join(PIPELINES)}")
    return load().sma_forward(q, k, v, m_q, m_k, alpha, out, PIPELINES[pipeline])


def wgmma_runs(head_dim: int, dtype: torch.dtype) -> bool:
    """Whether pipeline "wgmma" runs here: an sm_90 GPU, fp16/bf16, head_dim <= 64."""
    return load().wgmma_runs(head_dim, dtype)


@torch.library.custom_op(f"{SMA.domain}::sma_kernel", mutates_args=(), device_types="cuda")
def sma_kernel(q: Tensor, k: Tensor, v: Tensor, m_q: Tensor, m_k: Tensor, alpha: Tensor) -> Tensor:
    """SMA by the fused kernel, as attention calls it: q, k, v [B, H, S, D] views of [B, S, H, D]."""
    return load().sma_forward(q, k, v, m_q, m_k, alpha, None)


@sma_kernel.register_fake
def _(q: Tensor, k: Tensor, v: Tensor, m_q: Tensor, m_k: Tensor, alpha: Tensor) -> Tensor:
    b, h, s, d = q.shape
    return q.new_empty(b, s, h, d).transpose(1, 2)  # the layout the binding allocates


def prepare_form(form: str, device: torch.device) -> str:
    """`form` for TorchBackend, the kernel built first when it is asked for; ValueError names the fix."""
    if form not in FORMS:
        raise ValueError(f"--sma {form!r}: choose one of {', '.join(FORMS)}")
    if form != "kernel":
        return form
    if device.type != "cuda":
        raise ValueError(f"--sma kernel runs the plugin's CUDA kernel: give --device cuda, not {device}")
    try:
        load()
    except (RuntimeError, OSError, ImportError) as err:
        raise ValueError(
            f"--sma kernel: the SMA kernel extension did not build ({err}); "
            "it needs nvcc and a CUDA build of torch; --sma fold runs without it"
        ) from None
    return form


sma.BACKENDS["kernel"] = sma_kernel
