"""What the deployed UNet weighs against one UNet of its architecture.

Issue target: engine weights at most 1.2x one UNet's (only the bg Q/K/V set is extra). For an
export folder the graph's initializers and the engine file are both measured, so a TensorRT build
that duplicates or pads weights shows up before a GPU is at hand; for the torch backend, the
UNet's tensors as they are held in memory (where TensorRT cannot run, it is the deployment).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from diffusers import UNet2DConditionModel
from torch import nn

from mild_export.engine.trt_shim import PLUGIN_LIBRARY_NAME
from mild_export.export.onnx_export import initializer_bytes
from reference.config import ModelConfig

BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


@dataclass(frozen=True)
class UNetWeights:
    params: int  # one UNet of the architecture
    precision: str
    held: dict[str, int]  # bytes by what holds the weights: unet.onnx, unet.plan, the torch UNet

    @property
    def one_unet_bytes(self) -> int:
        return self.params * BYTES[self.precision]

    def line(self) -> str:
        one = self.one_unet_bytes
        ratios = ", ".join(f"{name} {size / one:.3f}x" for name, size in self.held.items())
        return (
            f"UNet weights: one UNet {self.params / 1e6:.1f}M params = {one / 2**20:.1f} MiB in "
            f"{self.precision}; {ratios} (target: at most 1.2x)"
        )


def unet_params(config: ModelConfig) -> int:
    """Parameters of the plain diffusers UNet, counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config.unet)
    return sum(p.numel() for p in unet.parameters())


def graph_weight_bytes(path: Path) -> int:
    """Bytes of every initializer of the graph, read from its header (external data not loaded)."""
    return initializer_bytes(onnx.load(str(path), load_external_data=False))


def stored_bytes(module: nn.Module) -> int:
    """Bytes of the distinct storages behind `module`'s parameters: views (fused projections,
    shared tensors) count once."""
    storages = {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() for p in module.parameters()}
    return sum(storages.values())


def unet_weights(folder: Path, config: ModelConfig, precision: str) -> UNetWeights:
    """An export folder's UNet: its graph's initializers, and its engine file where built."""
    held = {"unet.onnx": graph_weight_bytes(folder / "unet.onnx")}
    plan = folder / "unet.plan"
    if plan.is_file():
        library = folder / PLUGIN_LIBRARY_NAME
        embedded = f"{library.stat().st_size / 2**20:.1f} MiB " if library.is_file() else ""
        # on a small model the library, not the weights, is most of the file
        held[f"unet.plan (file, the {embedded}plugin library embedded)"] = plan.stat().st_size
    return UNetWeights(unet_params(config), precision, held)


def model_unet_weights(unet: nn.Module, config: ModelConfig, precision: str) -> UNetWeights:
    """A model's UNet as a PyTorch backend holds it (the torch backend's: merged, low-rank, fused)."""
    return UNetWeights(unet_params(config), precision, {"torch UNet": stored_bytes(unet)})
