"""The layered UNet: one diffusers UNet serving the N fg branches and the bg branch in one call.

Its forward is the engine contract of DESIGN.md section 4: fg and bg rows come as separate
inputs, run through every shared layer concatenated, and part again at the output.
"""

from __future__ import annotations

import warnings

import peft
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from torch import Tensor, nn

from reference.branch_attention import BRANCHES, BranchContext, install_processors, split_branches
from reference.config import LORA_TARGETS, ModelConfig
from reference.offsets import LATENT_CHANNELS, SpatialOffsets

INPAINT_CHANNELS = 9  # noisy latent 4 + mask 1 + masked-image latent 4


def token_mask_pyramid(mask: Tensor, levels: int) -> list[Tensor]:
    """Branch mask [B, 1, h, w] on every level's token grid, flattened to [B, S_level].

    Max-pooling (ceil mode, matching the UNet's stride-2 convolutions) marks a token as inside
    when any latent pixel it covers touches the mask. Level i pools the mask once by 2^i, which
    equals pooling by 2 i times (ceil mode included): torch.compile recomputed a chain of pools
    into a copy for every attention layer reading it (180 small kernels a step in SDXL's compiled
    profile, bench/RESULTS.md call H), where it computes one pool once.
    """
    return [
        (F.max_pool2d(mask, kernel_size=2**i, stride=2**i, ceil_mode=True) if i else mask).flatten(1)
        for i in range(levels)
    ]


class LayeredUNet(nn.Module):
    def __init__(self, unet: UNet2DConditionModel, config: ModelConfig, lora: bool = True):
        super().__init__()
        if unet.config.in_channels != INPAINT_CHANNELS:
            raise ValueError(
                f"MILD needs an inpainting UNet with {INPAINT_CHANNELS} input channels, this one has "
                f"{unet.config.in_channels}: use an *-inpainting checkpoint"
            )
        self.config = config
        self.unet = unet
        if lora:
            for branch in BRANCHES:
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                unet.add_adapter(
                    peft.LoraConfig(
                        r=config.lora.rank,
                        lora_alpha=config.lora.alpha,
                        target_modules=list(LORA_TARGETS),
                        init_lora_weights=True,
                    ),
                    adapter_name=branch,
                )
        install_processors(unet)
        self.offsets = SpatialOffsets(config.offsets)
        if config.has_added_conditions:
            unet.add_time_proj.register_forward_hook(self._size_ids_in_model_type)

    def _size_ids_in_model_type(self, module: nn.Module, args: tuple, embedded: Tensor) -> Tensor:
        """SDXL's size ids are embedded in float32 (diffusers' sinusoidal Timesteps), concatenated
        with the pooled text in the model's type, and the result cast to that type. PyTorch promotes
        the mixed concatenation; in ONNX it is a type error, and an fp16 export fails. Casting the
        embedding first gives the same numbers in one type. (A bound method, so a copied model's
        hook reads the copy's type.)"""
        return embedded.to(self.unet.add_embedding.linear_1.weight.dtype)

    @property
    def levels(self) -> int:
        return len(self.unet.down_blocks)

    def forward(
        self,
        sample_fg: Tensor,
        sample_bg: Tensor,
        mask_fg: Tensor,
        mask_bg: Tensor,
        context_fg: Tensor,
        context_bg: Tensor,
        timestep: Tensor,
        text_embeds: Tensor | None = None,
        time_ids: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        n_fg = sample_fg.shape[0]
        sample = torch.cat([sample_fg, sample_bg])
        mask = torch.cat([mask_fg, mask_bg])
        latent = sample[:, :LATENT_CHANNELS] + self.offsets(mask)  # Alg. 3 line 1
        sample = torch.cat([latent, sample[:, LATENT_CHANNELS:]], dim=1)
        branches = BranchContext(n_fg, token_mask_pyramid(mask, self.levels))
        added = None
        if self.config.has_added_conditions:
            added = {"text_embeds": text_embeds, "time_ids": time_ids}
        eps = self.unet(
            sample,
            timestep,
            encoder_hidden_states=torch.cat([context_fg, context_bg]),
            added_cond_kwargs=added,
            cross_attention_kwargs={"branches": branches},
            return_dict=False,
        )[0]
        return split_branches(eps, n_fg)
