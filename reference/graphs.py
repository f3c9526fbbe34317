"""The graphs a MILD pipeline runs, by name, with their input and output names.

Every backend (PyTorch reference, ONNX Runtime, TensorRT) runs the same named graphs on the same
named arrays, so the denoising loop, guidance, DDIM and composition are written once
(DESIGN.md section 6). The names of the UNet follow the engine contract (section 4).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GraphSpec:
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


TEXT_ENCODER = GraphSpec("text_encoder", ("input_ids",), ("prompt_embeds",))
TEXT_ENCODER_XL = GraphSpec(
    "text_encoder", ("input_ids", "input_ids_2"), ("prompt_embeds", "pooled_prompt_embeds")
)
CONDITIONER = GraphSpec(
    "conditioner", ("pose_maps", "parsing_maps", "mask_maps"), ("hmg_tokens", "mask_tokens")
)
VAE_ENCODER = GraphSpec("vae_encoder", ("images",), ("latents",))
VAE_DECODER = GraphSpec("vae_decoder", ("latents",), ("images",))
UNET = GraphSpec(
    "unet",
    ("sample_fg", "sample_bg", "mask_fg", "mask_bg", "context_fg", "context_bg", "timestep"),
    ("eps_fg", "eps_bg"),
)
UNET_XL = GraphSpec("unet", (*UNET.inputs, "text_embeds", "time_ids"), UNET.outputs)


def graph_specs(added_conditions: bool) -> dict[str, GraphSpec]:
    """The five graphs of a model; SDXL layouts take pooled text and size ids."""
    specs = (
        TEXT_ENCODER_XL if added_conditions else TEXT_ENCODER,
        CONDITIONER,
        VAE_ENCODER,
        VAE_DECODER,
        UNET_XL if added_conditions else UNET,
    )
    return {s.name: s for s in specs}
