"""How one image's masks, pose, parsing and text become the N+1 branch inputs.

Inference (`reference.pipeline`) and training (`reference.train`) must build exactly the same
9-channel inputs, latent masks and conditioning tokens, or a trained model sees at test time
inputs it never saw while learning. Both call these functions; only how the encoders run differs
(a backend's graphs without gradients at inference, the modules with gradients in training).

    branch rows:   fg k = 0..N-1 conditioned on M_k, then bg on M_all = clamp(sum M_k, 0, 1)
    9-ch input:    [z_t, latent mask, E(x * (1 - branch mask))]      (DESIGN.md section 1)
    tokens:        C_k = [text; pose; parsing; mask tokens of M_others(k) / M_all]  (Sec. 3.2, Eq. 7)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from reference import hmg
from reference.config import HMGConfig

LATENT_FACTOR = 8


def branch_masks(masks: Tensor) -> Tensor:
    """[N, H, W] instance masks -> [N + 1, 1, H, W]: M_1..M_N, then M_all for the bg branch."""
    m_all = masks.sum(dim=0, keepdim=True).clamp(0, 1)
    return torch.cat([masks, m_all])[:, None]


def latent_masks(masks: Tensor) -> Tensor:
    """Masks [B, 1, H, W] at latent size: a latent pixel touching the mask is inside."""
    return F.max_pool2d(masks, LATENT_FACTOR)


def masked_images(image: Tensor, masks: Tensor) -> Tensor:
    """image [3, H, W] in [0, 1], branch masks [B, 1, H, W] -> VAE inputs x * (1 - M) in [-1, 1]."""
    return (image * 2 - 1)[None] * (1 - masks)


def condition_maps(
    masks: Tensor,
    keypoints: Tensor | None,
    parsing: Tensor | None,
    config: HMGConfig,
) -> dict[str, Tensor]:
    """The conditioner's inputs for one image: pose [1, 18, S, S], parsing [1, 20, S, S] and
    context masks [N + 1, 1, S, S] (Eq. 7 per fg branch, M_all for bg).

    Missing pose or parsing render as zero maps (DESIGN.md section 1), never an error.
    """
    n, size = masks.shape[0], tuple(masks.shape[1:])
    device = masks.device
    if keypoints is None:
        keypoints = torch.zeros(n, hmg.POSE_CHANNELS, 3)
    return {
        "pose_maps": hmg.render_pose_maps(keypoints.float().to(device), size, config)[None],
        "parsing_maps": hmg.render_parsing_maps(None if parsing is None else parsing.to(device), config)[
            None
        ].to(device),
        "mask_maps": hmg.render_mask_maps(hmg.context_masks(masks), config),
    }


def branch_contexts(prompt_embeds: Tensor, hmg_tokens: Tensor, mask_tokens: Tensor) -> Tensor:
    """[1, T, C] text, [1, 2G, C] pose+parsing, [N+1, G, C] mask tokens -> C_k for all rows [N+1, L, C]."""
    shared = torch.cat([prompt_embeds, hmg_tokens], dim=1)
    return torch.cat([shared.expand(mask_tokens.shape[0], -1, -1), mask_tokens], dim=1)
