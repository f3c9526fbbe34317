"""The graphs a MILD pipeline runs, by name, with their input and output names.

Every backend (PyTorch reference, ONNX Runtime, TensorRT) runs the same named graphs on the same
named arrays, so the denoising loop, guidance, DDIM and composition are written once
(DESIGN.md section 6). The names of the UNet follow the engine contract (section 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reference.config import ModelConfig


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
VAE_GRAPHS = (VAE_ENCODER.name, VAE_DECODER.name)


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


def vae_needs_fp32(config: ModelConfig) -> bool:
    """SDXL's VAE overflows float16 (activations past 65504: NaN, black images), and diffusers'
    SDXL pipelines run it in float32 when its config says `force_upcast` (AutoencoderKL's default;
    the fp16-fix VAE says False). SD 1.5's VAE is fine in float16 and its pipelines never upcast."""
    return config.has_added_conditions and bool(config.vae.get("force_upcast", True))


def graph_dtypes(
    config: ModelConfig, dtype: torch.dtype, upcast: torch.dtype = torch.float32
) -> dict[str, torch.dtype]:
    """The type each graph runs in when the model is asked to run in `dtype`: `dtype`, except a VAE
    that overflows float16 when `dtype` is float16: that one runs in `upcast`, float32 as diffusers'
    SDXL pipelines do, or bfloat16 where the device has it (float32's range; `vae_upcast`)."""
    upcast_vae = dtype == torch.float16 and vae_needs_fp32(config)
    names = graph_specs(config.has_added_conditions)
    return {name: upcast if upcast_vae and name in VAE_GRAPHS else dtype for name in names}


def vae_upcast(device: torch.device) -> torch.dtype:
    """What an fp16-overflowing VAE runs in on `device`: bfloat16 on a GPU with bf16 tensor cores,
    float32 elsewhere. bfloat16 has float32's exponent range, so nothing overflows, and its
    convolutions run on the tensor cores at float16's rate, twice TF32's, with half the memory
    traffic: in float32 the VAE took 97 ms of a 555 ms image on an H200 (11 TFLOP, about 110
    TFLOP/s; bench/RESULTS.md). Its 8-bit mantissa costs precision that fp16 UNets already give up.
    """
    if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0):
        return torch.bfloat16
    return torch.float32
