"""What the UNet of an export folder weighs against one UNet of its architecture.

Issue target: engine weights at most 1.2x one UNet's (only the bg Q/K/V set is extra). The graph's
initializers and the engine file are both measured, so a TensorRT build that duplicates or pads
weights shows up before a GPU is at hand; device memory itself is the GPU's to report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from diffusers import UNet2DConditionModel

from mild_export.export.onnx_export import initializer_bytes
from reference.config import ModelConfig

BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


@dataclass(frozen=True)
class UNetWeights:
    params: int  # one UNet of the architecture
    precision: str
    graph_bytes: int  # the UNet graph's initializers (inline or external)
    engine_bytes: int | None  # unet.plan, when built

    @property
    def one_unet_bytes(self) -> int:
        return self.params * BYTES[self.precision]

    def line(self) -> str:
        one = self.one_unet_bytes
        text = (
            f"UNet weights: one UNet {self.params / 1e6:.1f}M params = {one / 2**20:.1f} MiB in "
            f"{self.precision}; unet.onnx {self.graph_bytes / one:.3f}x"
        )
        if self.engine_bytes is not None:
            text += f", unet.plan {self.engine_bytes / one:.3f}x (file, plugin library included)"
        return text + " (target: at most 1.2x)"


def unet_params(config: ModelConfig) -> int:
    """Parameters of the plain diffusers UNet, counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config.unet)
    return sum(p.numel() for p in unet.parameters())


def graph_weight_bytes(path: Path) -> int:
    """Bytes of every initializer of the graph, read from its header (external data not loaded)."""
    return initializer_bytes(onnx.load(str(path), load_external_data=False))


def unet_weights(folder: Path, config: ModelConfig, precision: str) -> UNetWeights:
    plan = folder / "unet.plan"
    return UNetWeights(
        params=unet_params(config),
        precision=precision,
        graph_bytes=graph_weight_bytes(folder / "unet.onnx"),
        engine_bytes=plan.stat().st_size if plan.is_file() else None,
    )
