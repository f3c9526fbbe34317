"""The torch callables behind each exported graph, taking and returning the contract's names."""

from __future__ import annotations

from torch import Tensor, nn

from reference.merge import is_merged, merge_model
from reference.model import MildModel


class TextEncoderGraph(nn.Module):
    def __init__(self, model: MildModel):
        super().__init__()
        self.text = model.text

    def forward(self, input_ids: Tensor, input_ids_2: Tensor | None = None) -> tuple[Tensor, ...]:
        ids = (
            {"input_ids": input_ids}
            if input_ids_2 is None
            else {"input_ids": input_ids, "input_ids_2": input_ids_2}
        )
        return tuple(self.text(**ids).values())


class ConditionerGraph(nn.Module):
    def __init__(self, model: MildModel):
        super().__init__()
        self.hmg = model.hmg

    def forward(self, pose_maps: Tensor, parsing_maps: Tensor, mask_maps: Tensor) -> tuple[Tensor, Tensor]:
        return self.hmg(pose_maps, parsing_maps, mask_maps)


class VaeEncoderGraph(nn.Module):
    def __init__(self, model: MildModel):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model.encode_images(images)


class VaeDecoderGraph(nn.Module):
    def __init__(self, model: MildModel):
        super().__init__()
        self.model = model

    def forward(self, latents: Tensor) -> Tensor:
        return self.model.decode_latents(latents)


def graph_modules(model: MildModel) -> dict[str, nn.Module]:
    """The UNet is exported merged (Eq. 1 folded into BranchLinear Q/K/V), so each projection runs
    once per row set; with the LoRA adapters the graph would add B(A x) for both sets on every row."""
    if not is_merged(model):
        model = merge_model(model)
    return {
        "text_encoder": TextEncoderGraph(model),
        "conditioner": ConditionerGraph(model),
        "vae_encoder": VaeEncoderGraph(model),
        "vae_decoder": VaeDecoderGraph(model),
        "unet": model.unet,
    }
