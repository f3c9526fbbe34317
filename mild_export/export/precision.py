"""One precision setting for a whole export: fp32, fp16 or bf16 weights and activations.

TensorRT for RTX networks are strongly typed, so the precision of an engine is the precision of
its ONNX graph (DESIGN.md section 7). A few values stay fp32 whatever the setting, and the
manifest lists them: the UNet's timestep input, the SMA logits and softmax inside the op, and
under fp16 the VAE graphs of an SDXL model whose VAE overflows fp16 (`reference.graphs.graph_dtypes`).
"""

from __future__ import annotations

import enum

import torch


class Precision(enum.Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"

    @property
    def dtype(self) -> torch.dtype:
        return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.value]

    @classmethod
    def of(cls, dtype: torch.dtype) -> Precision:
        return next(p for p in cls if p.dtype == dtype)


KEPT_IN_FP32 = ("unet input timestep", "SMA logits and softmax")
VAE_KEPT_IN_FP32 = "vae_encoder and vae_decoder graphs (SDXL's VAE overflows fp16: its force_upcast)"


class SMAForm(enum.Enum):
    """How the UNet graph expresses Spatially-Modulated Attention.

    plugin and function export the same ONNX (a `mild` node with a function body); they differ
    when engines are built: the parser swaps in the plugin, or inlines the body. fold exports
    plain attention over Q and K extended by one channel.
    """

    PLUGIN = "plugin"
    FUNCTION = "function"
    FOLD = "fold"
