"""Which backend a benchmark runs on: a name -> builder registry, so a new backend is one entry.

Each builder returns a `Target`: the backend, the model configuration FLOPs are counted from,
the precision the matrix rate is measured in, and the limits of what it can serve.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from mild_export.engine.sma_torch_ext import prepare_form
from reference.backend import Backend
from reference.config import PRESETS, ModelConfig

if TYPE_CHECKING:
    from mild_export.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from mild_export.runtime.tensorrt_backend import TensorRTBackend

log = logging.getLogger("mild")

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class BenchOptions:
    model: str  # tiny, sd15-inpaint, sdxl-inpaint or a diffusers folder (reference backend)
    engines: Path | None  # a mild-export output folder (exported-graph backends)
    device: torch.device
    precision: str | None  # None: the backend's own default
    sma: str | None = None  # the reference's SMA form (reference.sma.BACKENDS); None: "reference"


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


class CastBackend:
    """Runs a reference backend in half precision: floating inputs cast in, outputs back to fp32.

    The pipeline hands every backend fp32 arrays and reads fp32 back, as the ONNX Runtime backend
    does for fp16 graphs, so the same loop times the half-precision model.
    """

    def __init__(self, inner: Backend, dtype: torch.dtype):
        self.inner, self.dtype = inner, dtype
        self.config, self.device = inner.config, inner.device

    def tokenize(self, prompts: list[str]) -> dict[str, Tensor]:
        return self.inner.tokenize(prompts)

    def run(self, graph: str, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        cast = {k: v.to(self.dtype) if v.is_floating_point() else v for k, v in inputs.items()}
        return {k: v.float() for k, v in self.inner.run(graph, cast).items()}


def reference(options: BenchOptions) -> Target:
    from reference.backend import TorchBackend
    from reference.model import load_model

    if options.engines is not None:
        raise ValueError("--backend reference runs a model: give --model, not --engines")
    sma_form = prepare_form(options.sma or "reference", options.device)
    precision = options.precision or ("fp16" if options.device.type == "cuda" else "fp32")
    log.info("building model %s on %s in %s (SMA: %s)", options.model, options.device, precision, sma_form)
    # random weights drawn on the GPU itself: SDXL's take a minute on the CPU, a second there
    on_device = options.model in PRESETS and options.device.type == "cuda"
    with options.device if on_device else contextlib.nullcontext():
        model = load_model(options.model).to(PRECISIONS[precision])
    backend: Backend = TorchBackend(model, options.device, sma_form)
    if precision != "fp32":
        backend = CastBackend(backend, PRECISIONS[precision])
    return Target("reference", backend, model.config, precision, sma_form)


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
            f"--sma chooses the SMA form of --backend reference; {name} runs the form the graphs were "
            "exported with (mild-export --sma)"
        )


def _exported(name: str, backend: OnnxRuntimeBackend | TensorRTBackend, options: BenchOptions) -> Target:
    """A backend over a mild-export folder: its precision and shapes are the folder's."""
    manifest = backend.manifest
    if options.precision not in (None, manifest.precision):
        raise ValueError(
            f"{options.engines} holds {manifest.precision} graphs, not {options.precision}: "
            f"drop --precision or export again with --{options.precision}"
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


BACKENDS: dict[str, Callable[[BenchOptions], Target]] = {
    "reference": reference,
    "onnxruntime": onnxruntime,
    "tensorrt": tensorrt,
}


def make_target(name: str | None, options: BenchOptions) -> Target:
    """`name` None picks the backend from what was given: exported graphs, or a model."""
    if name is None:
        name = "onnxruntime" if options.engines is not None else "reference"
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name](options)
