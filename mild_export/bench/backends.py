"""Which backend a benchmark runs on: a name -> builder registry, so a new backend is one entry.

Each builder returns a `Target`: the backend, the model configuration FLOPs are counted from,
the precision the matrix rate is measured in, and the limits of what it can serve.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from mild_export.engine.sma_torch_ext import prepare_form
from mild_export.runtime.torch_backend import (
    PRECISIONS,
    CastBackend,
    backend_model,
    default_precision,
    default_sma,
    torch_backend,
)
from reference.backend import Backend
from reference.config import PRESETS, ModelConfig
from reference.model import MildModel

if TYPE_CHECKING:
    from mild_export.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from mild_export.runtime.tensorrt_backend import TensorRTBackend

log = logging.getLogger("mild")


@dataclass(frozen=True)
class BenchOptions:
    model: str  # tiny, sd15-inpaint, sdxl-inpaint or a diffusers folder (reference, torch)
    engines: Path | None  # a mild-export output folder (exported-graph backends)
    device: torch.device
    precision: str | None  # None: the backend's own default
    sma: str | None = None  # the SMA form of reference/torch (reference.sma.BACKENDS); None: their default
    compile_model: bool = False  # torch: torch.compile the UNet and the VAE


@dataclass
class Target:
    name: str
    backend: Backend
    config: ModelConfig
    precision: str
    sma: str  # how the UNet's self-attention computes SMA: a reference form or the export's --sma
    max_instances: int | None = None  # None: any
    resolutions: tuple[int, ...] | None = None  # exported sides; None: any multiple the model takes
    guidance: bool = True  # whether guided (two-row) cases can run
    unet: nn.Module | None = None  # the deployed UNet where a model is the deployment (torch)


def reference(options: BenchOptions) -> Target:
    from reference.backend import TorchBackend

    model, precision, sma_form = _model("reference", options, default_sma="reference")
    backend: Backend = TorchBackend(model.cast(PRECISIONS[precision]), options.device, sma_form)
    if precision != "fp32":
        backend = CastBackend(backend, PRECISIONS[precision])
    return Target("reference", backend, model.config, precision, sma_form)


def torch_deployment(options: BenchOptions) -> Target:
    """The merged model with CUDA graphs (mild_export.runtime.torch_backend): where TensorRT cannot run."""
    model, precision, sma_form = _model("torch", options, default_sma(options.device))
    backend = torch_backend(model, options.device, precision, sma_form, compile_model=options.compile_model)
    return Target("torch", backend, model.config, precision, sma_form, unet=backend_model(backend).unet)


def _model(name: str, options: BenchOptions, default_sma: str) -> tuple[MildModel, str, str]:
    """The model of --model (random weights drawn on the GPU itself for presets: SDXL's take a
    minute on the CPU, a second there), its precision and the SMA form, checked."""
    from reference.model import load_model

    if options.engines is not None:
        raise ValueError(f"--backend {name} runs a model: give --model, not --engines")
    sma_form = prepare_form(options.sma or default_sma, options.device)
    precision = options.precision or default_precision(options.device)
    log.info("building model %s on %s in %s (SMA: %s)", options.model, options.device, precision, sma_form)
    on_device = options.model in PRESETS and options.device.type == "cuda"
    with options.device if on_device else contextlib.nullcontext():
        return load_model(options.model), precision, sma_form


def onnxruntime(options: BenchOptions) -> Target:
    from mild_export.runtime.onnxruntime_backend import OnnxRuntimeBackend

    _need_engines("onnxruntime", options)
    return _exported("onnxruntime", OnnxRuntimeBackend(options.engines, device=str(options.device)), options)


def tensorrt(options: BenchOptions) -> Target:
    from mild_export.runtime.tensorrt_backend import TensorRTBackend

    _need_engines("tensorrt", options)
    return _exported("tensorrt", TensorRTBackend(options.engines, device=options.device), options)


def _need_engines(name: str, options: BenchOptions) -> None:
    if options.engines is None:
        raise ValueError(f"--backend {name} runs exported graphs: give --engines DIR (made by mild-export)")
    if options.sma is not None:
        raise ValueError(
            f"--sma chooses the SMA form of --backend reference or torch; {name} runs the form the "
            "graphs were exported with (mild-export --sma)"
        )


def _exported(name: str, backend: OnnxRuntimeBackend | TensorRTBackend, options: BenchOptions) -> Target:
    """A backend over a mild-export folder: its precision and shapes are the folder's."""
    manifest = backend.manifest
    if options.precision not in (None, manifest.precision):
        raise ValueError(
            f"{options.engines} holds {manifest.precision} graphs, not {options.precision}: "
            f"drop --precision or export again {export_flag(options.precision)}"
        )
    shapes = manifest.shapes
    return Target(
        name,
        backend,
        backend.config,
        manifest.precision,
        manifest.sma,
        max_instances=shapes["max_instances"],
        resolutions=tuple(shapes["resolutions"]),
        guidance=bool(shapes["guidance"]),
    )


def export_flag(precision: str) -> str:
    """How mild-export is asked for `precision`: fp32 is its default and has no flag."""
    return "without --fp16 or --bf16" if precision == "fp32" else f"with --{precision}"


BACKENDS: dict[str, Callable[[BenchOptions], Target]] = {
    "reference": reference,
    "torch": torch_deployment,
    "onnxruntime": onnxruntime,
    "tensorrt": tensorrt,
}


def make_target(name: str | None, options: BenchOptions) -> Target:
    """`name` None picks the backend from what was given: exported graphs, or a model."""
    if name is None:
        name = "onnxruntime" if options.engines is not None else "reference"
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    if options.compile_model and name != "torch":
        raise ValueError(f"--compile compiles the merged model of --backend torch, not --backend {name}")
    return BACKENDS[name](options)
