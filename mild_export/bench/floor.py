"""The compute floor of a case: FLOPs counted from the model, over the device's matrix rate.

FLOPs come from a forward pass of the reference modules under `FlopCounterMode` on the meta
device: no weights are materialised (the SDXL layout, text encoders included, holds 3.4 billion
parameters: 14 GB in fp32), and attention is counted (on CPU tensors PyTorch's fused SDPA kernel
is not counted at all). The counter sees matrix products and convolutions only, so the floor is
what the matrix units cannot beat.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from mild_export.bench.cases import Case
from mild_export.bench.timing import synchronize
from mild_export.export.contracts import LATENT_FACTOR, ExportShapes, contracts
from reference.backend import TorchBackend
from reference.config import ModelConfig
from reference.model import build_model

META = torch.device("meta")
Shapes = dict[str, tuple[int, ...]]


def count_flops(fn: Callable[..., Any], *args: Any) -> int:
    """FLOPs (2 per multiply-add) of the matrix products and convolutions `fn(*args)` runs."""
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return int(counter.get_total_flops())


def graph_shapes(config: ModelConfig, case: Case) -> dict[str, Shapes]:
    """The input shapes of each graph call in one image of `case`, from the export contracts.

    All N + 1 branches (x2 with guidance) share one UNet call; every layer is decoded.
    """
    n, c, side = case.instances, case.copies, case.resolution
    graphs = contracts(config, ExportShapes(resolutions=(side,), max_instances=n, guidance=c == 2))
    symbols = {
        "prompts": c,
        "branches": n + 1,
        "layers": n + 1,
        "image_height": side,
        "image_width": side,
        "height": side // LATENT_FACTOR,
        "width": side // LATENT_FACTOR,
        "batch_fg": n * c,
        "batch_bg": c,
        "rows": (n + 1) * c,
    }
    return {
        name: {
            k: tuple(symbols[d] if isinstance(d, str) else d for d in dims) for k, dims in g.inputs.items()
        }
        for name, g in graphs.items()
    }


def calls_per_image(case: Case) -> dict[str, int]:
    return {"text_encoder": 1, "conditioner": 1, "vae_encoder": 1, "unet": case.steps, "vae_decoder": 1}


class FlopCounter:
    """Counts graph FLOPs on the model's modules built with shapes and no storage (meta device)."""

    def __init__(self, config: ModelConfig):
        self.config = config
        with META:
            self.backend = TorchBackend(build_model(config), META)
        self.int_inputs = set(self.backend.specs["text_encoder"].inputs)  # token ids

    def graph(self, graph: str, shapes: Shapes) -> int:
        """FLOPs of one call of `graph` on inputs of `shapes`."""
        inputs = {
            name: torch.zeros(
                shape, dtype=torch.int64 if name in self.int_inputs else torch.float32, device=META
            )
            for name, shape in shapes.items()
        }
        return count_flops(self.backend.run, graph, inputs)

    def case(self, case: Case) -> dict[str, int]:
        """FLOPs per graph for one whole image of `case` (the UNet over all its steps)."""
        shapes = graph_shapes(self.config, case)
        return {g: calls * self.graph(g, shapes[g]) for g, calls in calls_per_image(case).items()}


@dataclass(frozen=True)
class MatrixRate:
    """The device's measured dense matrix-multiply rate in the bench's precision."""

    device: str
    dtype: str
    size: int  # a size x size x size product
    seconds: float  # median over the timed repeats
    flops_per_s: float


def matrix_rate(device: torch.device, dtype: torch.dtype, repeats: int = 10) -> MatrixRate:
    """Time a square matmul: 1024^3 on CPU, 8192^3 on a GPU (large enough to fill it)."""
    size = 8192 if device.type == "cuda" else 1024
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=g).to(device, dtype) for _ in range(2))
    times = []
    for i in range(repeats + 2):  # the first two warm up caches, clocks and the BLAS's workspaces
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        if i >= 2:
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return MatrixRate(str(device), str(dtype).removeprefix("torch."), size, seconds, 2 * size**3 / seconds)
