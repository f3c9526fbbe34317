"""One precision setting for a whole export: fp32, fp16 or bf16 weights and activations.

TensorRT for RTX networks are strongly typed, so the precision of an engine is the precision of
its ONNX graph (DESIGN.md section 7). A few values stay fp32 whatever the setting, and the
manifest lists them: the UNet's timestep input, and the SMA logits and softmax inside the op.
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


KEPT_IN_FP32 = ("unet input timestep", "SMA logits and softmax")


class SMAForm(enum.Enum):
    """How the UNet graph expresses Spatially-Modulated Attention.

    plugin and function export the same ONNX (a `mild` node with a function body); they differ
    when engines are built: the parser swaps in the plugin, or inlines the body. fold exports
    plain attention over Q and K extended by one channel.
    """

    PLUGIN = "plugin"
    FUNCTION = "function"
    FOLD = "fold"
