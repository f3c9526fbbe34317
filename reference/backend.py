"""The one interface every backend implements: run a named graph on named tensors.

The PyTorch reference implements it here by calling the model's modules; the ONNX Runtime and
TensorRT backends run exported graphs of the same names (`reference.graphs`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import torch
from torch import Tensor

from reference import sma
from reference.config import ModelConfig
from reference.graphs import GraphSpec, graph_specs
from reference.model import MildModel


class Backend(Protocol):
    config: ModelConfig
    device: torch.device

    def tokenize(self, prompts: list[str]) -> dict[str, Tensor]: ...

    def run(self, graph: str, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]: ...


class TorchBackend:
    """The reference: the PyTorch modules themselves, in their own precision.

    `sma_form` names the SMA implementation the UNet's self-attention runs (`reference.sma.BACKENDS`):
    the same model timed with the bias materialised, the fold form, or the plugin's CUDA kernel.
    """

    def __init__(self, model: MildModel, device: str | torch.device = "cpu", sma_form: str = "reference"):
        if sma_form not in sma.BACKENDS:
            raise ValueError(f"unknown SMA form {sma_form!r}: choose one of {', '.join(sma.BACKENDS)}")
        self.model = model.to(device).eval()
        self.config = model.config
        self.device = torch.device(device)
        self.sma_form = sma_form
        self.specs = graph_specs(self.config.has_added_conditions)

    def tokenize(self, prompts: list[str]) -> dict[str, Tensor]:
        return {k: v.to(self.device) for k, v in self.model.text.tokenize(prompts).items()}

    def run(self, graph: str, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Inputs may be on any device (they are moved to the backend's, as the other backends
        copy host arrays in); outputs are on the backend's device."""
        spec = self.specs[graph]
        args = {name: inputs[name].to(self.device) for name in spec.inputs}
        with torch.no_grad(), sma.use_backend(self.sma_form):
            outputs = self._call(spec, args)
        return dict(zip(spec.outputs, outputs, strict=True))

    def _call(self, spec: GraphSpec, args: dict[str, Tensor]) -> tuple[Tensor, ...]:
        m = self.model
        if spec.name == "text_encoder":
            out = m.text(**args)
            return tuple(out[name] for name in spec.outputs)
        if spec.name == "conditioner":
            return m.hmg(**args)
        if spec.name == "vae_encoder":
            return (m.encode_images(args["images"]),)
        if spec.name == "vae_decoder":
            return (m.decode_latents(args["latents"]),)
        return m.unet(**args)
