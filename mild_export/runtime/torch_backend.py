"""The PyTorch deployment backend: for GPUs where TensorRT cannot run.

TensorRT for RTX has no sm90 (its engines fail to load on an H200, bench/RESULTS.md) and full
TensorRT is not installable everywhere, so on an H100/H200 without it this is the fastest path.
The reference is bound by the host there: its SDXL UNet step took 170 ms on an H200 for 7 ms of
matrix work, launching several small kernels per projection and branch (peft's LoRA layers).
This backend runs what the export runs instead: the merged model (Eq. 1 folded into one weight
set per branch, the bg set kept as its low-rank difference from the fg set) with each
attention's projections fused into one GEMM, in half precision, with the SMA form chosen, and on
a GPU it replays each UNet call as a CUDA graph, so a step costs the GPU's time and not Python's.

    backend = torch_backend(load_model("sdxl-inpaint"), torch.device("cuda"), "fp16", "kernel")
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from mild_export.export.branch_weights import BranchWeights, convert_branch_weights
from mild_export.runtime.context_kv import ContextKVBackend, can_project_once
from mild_export.runtime.cuda_graph import capture, failure_reason
from mild_export.runtime.prompt_cache import PromptCache
from reference.backend import Backend, TorchBackend
from reference.branch_attention import fuse_projections
from reference.graphs import graph_dtypes, vae_upcast
from reference.merge import is_merged, merge_model
from reference.model import MildModel

log = logging.getLogger("mild")

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MAX_CAPTURES = 8  # shape sets kept captured; the least recently used goes first
# Inductor's autotuning switches, each set by PyTorch's own environment variable (for example
# TORCHINDUCTOR_MAX_AUTOTUNE_GEMM=1): GEMMs as Triton templates with their epilogues fused where
# one beats cuBLAS, pointwise and reduction launches tuned. Off by default: minutes more compiling.
INDUCTOR_TUNING = ("max_autotune", "max_autotune_gemm", "max_autotune_pointwise", "coordinate_descent_tuning")


def default_sma(device: torch.device) -> str:
    """The plugin's kernel on a GPU (faster than the fold form at SDXL's sequence lengths on an
    H200, bench/RESULTS.md); on a CPU the fold form, plain attention with no bias tensor."""
    return "kernel" if device.type == "cuda" else "fold"


def default_precision(device: torch.device) -> str:
    return "fp16" if device.type == "cuda" else "fp32"


def torch_backend(
    model: MildModel,
    device: torch.device,
    precision: str,
    sma_form: str,
    cuda_graph: bool = True,
    compile_model: bool = False,
    bg_weights: BranchWeights = BranchWeights.LOW_RANK,
) -> Backend:
    """`model` merged (unless it is already), cast to `precision`, its bg Q/K/V in the form
    `bg_weights` (as `mild-export --bg-weights`: low-rank holds SDXL's UNet in 1.022x one UNet's
    weights, whole sets in 1.29x), its projections fused (in place), run on `device` with SMA by
    `sma_form`; on a GPU with `cuda_graph` the UNet is replayed as CUDA graphs; cross-attention's
    K/V are projected once per context (`ContextKVBackend`), text encodings kept per prompt. Takes
    and gives fp32 tensors at the boundary, as every backend does.

    `compile_model`: torch.compile (Inductor) of the UNet and the VAE (`compile_parts`). It compiles
    at the first call of each shape set (minutes for SDXL), so it pays in a process that erases
    many images, not in a single one."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    dtype, upcast = PRECISIONS[precision], vae_upcast(device)
    model = model.to(device).cast(dtype, upcast)  # first: the merge then folds on the device
    vae_dtype = graph_dtypes(model.config, dtype, upcast)["vae_decoder"]
    names = (str(t).removeprefix("torch.") for t in (dtype, vae_dtype))
    log.info("torch: the UNet in %s, the VAE in %s", *names)
    if not is_merged(model):
        model = merge_model(model)
    conversion = convert_branch_weights(model.unet, bg_weights, 2 * model.config.lora.rank)
    if conversion.factored:
        log.info(
            "torch: bg Q/K/V as rank-%d differences: %d projections (%d kept whole: higher rank)",
            conversion.rank,
            conversion.factored,
            conversion.whole,
        )
    fuse_projections(model.unet)  # last: a cast or move would copy the fused weights' views apart
    if compile_model:
        compile_parts(model)
    backend: Backend = TorchBackend(model, device, sma_form)
    if device.type == "cuda":
        # the shapes repeat (25 UNet calls an image): let cuDNN time its convolution algorithms
        # once per shape instead of taking its heuristic's pick (the VAE is all convolutions)
        torch.backends.cudnn.benchmark = True
    if cuda_graph and device.type == "cuda":
        backend = GraphedBackend(backend)
    if dtype != torch.float32:
        backend = CastBackend(backend, dtype, upcast)
    if can_project_once(model):
        backend = ContextKVBackend(backend, model)
    return CachedTextBackend(backend)


def compile_parts(model: MildModel) -> None:
    """torch.compile, in place, the UNet and the VAE's encoder and decoder: Inductor fuses norms,
    activations and residual adds into fewer kernels. The VAE for its GroupNorms: PyTorch's kernel
    reduces each (image, group) in one thread block, 32 to 96 blocks on a 132-SM H200, and the
    fp32 VAE's norms took 40 ms of its 97 (call A's profile, bench/RESULTS.md); Inductor splits
    such reductions across the GPU and fuses the SiLU that follows. The encoder and decoder, not
    the VAE: its `encode` and `decode` are not `forward`, which is what `compile` wraps."""
    tuning = tuning_on(inductor_tuning())
    log.info(
        "torch: the UNet and the VAE compile (torch.compile) at their first call of each shape set%s",
        f" (Inductor: {', '.join(tuning)})" if tuning else "",
    )
    for part in (model.unet, model.vae.encoder, model.vae.decoder):
        part.compile(dynamic=False)


def inductor_tuning() -> dict[str, bool]:
    """Which of Inductor's autotuning switches (`INDUCTOR_TUNING`) are on, so that a compiled
    timing records how it was compiled."""
    from torch._inductor import config

    return {name: bool(getattr(config, name)) for name in INDUCTOR_TUNING}


def tuning_on(tuning: dict[str, bool]) -> list[str]:
    """The switches of `inductor_tuning()` that are on, for a log line or a title."""
    return [name for name, on in tuning.items() if on]


def backend_model(backend: Backend) -> MildModel:
    """The model under a backend's wrappers (text cache, cast, CUDA graphs)."""
    while not hasattr(backend, "model"):
        backend = backend.inner
    return backend.model


class CachedTextBackend:
    """Runs the text encoder once per prompt (`PromptCache`), every other graph as `inner` does."""

    def __init__(self, inner: Backend):
        self.inner, self.text_cache = inner, PromptCache()
        self.config, self.device = inner.config, inner.device

    def tokenize(self, prompts: list[str]) -> dict[str, Tensor]:
        return self.inner.tokenize(prompts)

    def run(self, graph: str, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if graph != "text_encoder":
            return self.inner.run(graph, inputs)
        return self.text_cache.encodings(inputs, lambda: self.inner.run(graph, inputs))


class CastBackend:
    """Runs a PyTorch backend in half precision: floating inputs cast in, outputs back to fp32.

    The pipeline hands every backend fp32 arrays and reads fp32 back, as the ONNX Runtime backend
    does for fp16 graphs, so the same loop runs the half-precision model. Each graph gets the type
    its part of the model was cast to (`MildModel.cast`: under fp16 SDXL's VAE is in `upcast`).
    """

    def __init__(self, inner: Backend, dtype: torch.dtype, upcast: torch.dtype = torch.float32):
        self.inner, self.dtype = inner, dtype
        self.config, self.device = inner.config, inner.device
        self.dtypes = graph_dtypes(inner.config, dtype, upcast)

    def tokenize(self, prompts: list[str]) -> dict[str, Tensor]:
        return self.inner.tokenize(prompts)

    def run(self, graph: str, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        dtype = self.dtypes[graph]
        cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
        return {k: v.float() for k, v in self.inner.run(graph, cast).items()}


@dataclass
class _Capture:
    graph: torch.cuda.CUDAGraph
    inputs: dict[str, Tensor]  # the graph reads these: each call's inputs are copied in
    outputs: dict[str, Tensor]  # and writes these: each call returns copies


class GraphedBackend:
    """Replays one graph of a PyTorch backend (the UNet: 25 calls an image) as a CUDA graph per
    set of input shapes and dtypes. The first call with a shape set runs eagerly once on a side
    stream and is then captured (`cuda_graph.capture`); a capture that fails turns graphs off with
    the reason logged, and every call runs eagerly from then on."""

    def __init__(self, inner: Backend, graph: str = "unet"):
        self.inner, self.graph = inner, graph
        self.config, self.device = inner.config, inner.device
        self.off_reason: str | None = None
        self.captures: OrderedDict[tuple, _Capture] = OrderedDict()
        # One memory pool for all captures: a later capture may reuse what an earlier one freed,
        # so replays in any order can overwrite another capture's outputs; outputs are therefore
        # copied out right after their own replay, and inputs live outside the pool.
        self._pool = torch.cuda.graph_pool_handle()

    def tokenize(self, prompts: list[str]) -> dict[str, Tensor]:
        return self.inner.tokenize(prompts)

    def run(self, graph: str, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if graph != self.graph or self.off_reason is not None:
            return self.inner.run(graph, inputs)
        key = tuple((name, tuple(t.shape), t.dtype) for name, t in sorted(inputs.items()))
        capture = self.captures.get(key)
        if capture is None:
            capture = self._capture(key, inputs)
            if capture is None:
                return self.inner.run(graph, inputs)
        else:
            self.captures.move_to_end(key)
            for name, tensor in capture.inputs.items():
                tensor.copy_(inputs[name], non_blocking=True)
        capture.graph.replay()
        return {name: t.clone() for name, t in capture.outputs.items()}

    def _capture(self, key: tuple, inputs: Mapping[str, Tensor]) -> _Capture | None:
        static = {name: t.to(self.device, copy=True) for name, t in inputs.items()}
        try:
            graph, outputs = capture(lambda: self.inner.run(self.graph, static), self.device, self._pool)
        except RuntimeError as err:
            self.off_reason = failure_reason(err)
            log.warning("torch: %s runs without CUDA graphs: %s", self.graph, self.off_reason)
            return None
        self.captures[key] = _Capture(graph, static, outputs)
        if len(self.captures) > MAX_CAPTURES:
            self.captures.popitem(last=False)
        shapes = ", ".join(f"{name}={list(t.shape)}" for name, t in static.items())
        log.info("torch: %s captured into a CUDA graph for %s", self.graph, shapes)
        return self.captures[key]
