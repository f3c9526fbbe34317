"""DDIM sampling with eta = 0 (Song et al., 2021) on Stable Diffusion's training schedule.

    symbol      code
    t           timesteps[i]: the training step whose noise level the latent is at
    ᾱ_t         alphas_cumprod[t]
    z_t         latents
    ε_θ(z_t)    eps: the UNet's noise prediction
    ẑ_0         z0: the clean latent implied by z_t and ε_θ

It reproduces diffusers' DDIMScheduler with SD's settings ("leading" timestep spacing,
steps_offset 1, set_alpha_to_one False, no clipping), step for step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from reference.config import SchedulerConfig


def alphas_cumprod(config: SchedulerConfig) -> Tensor:
    """ᾱ_t for t = 0..T-1 from the scaled-linear betas."""
    betas = torch.linspace(config.beta_start**0.5, config.beta_end**0.5, config.num_train_timesteps) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def add_noise(z0: Tensor, eps: Tensor, t: Tensor, config: SchedulerConfig) -> Tensor:
    """Forward diffusion z_t = sqrt(ᾱ_t) z_0 + sqrt(1 - ᾱ_t) ε (used by training)."""
    a = alphas_cumprod(config).to(z0.device)[t].to(z0.dtype).view(-1, *([1] * (z0.ndim - 1)))
    return a.sqrt() * z0 + (1 - a).sqrt() * eps


@dataclass(frozen=True)
class DDIM:
    timesteps: Tensor  # int64, descending
    alpha_t: Tensor  # ᾱ at each timestep
    alpha_prev: Tensor  # ᾱ at the timestep the step lands on

    @classmethod
    def create(cls, config: SchedulerConfig, steps: int) -> DDIM:
        if not 1 <= steps <= config.num_train_timesteps:
            raise ValueError(f"steps must be in 1..{config.num_train_timesteps}, got {steps}")
        ac = alphas_cumprod(config)
        ratio = config.num_train_timesteps // steps
        timesteps = (torch.arange(steps - 1, -1, -1) * ratio + config.steps_offset).long()
        prev = timesteps - ratio
        alpha_prev = torch.where(prev >= 0, ac[prev.clamp(min=0)], ac[0])
        return cls(timesteps, ac[timesteps], alpha_prev)

    def __len__(self) -> int:
        return len(self.timesteps)

    def step(self, i: int, latents: Tensor, eps: Tensor) -> Tensor:
        """z_t -> z_{t-Δ} for step i.

        The square roots are taken in float32 on the CPU, as diffusers takes them, and enter as
        Python numbers: a CPU tensor moved to the GPU is a blocking copy, which would idle the GPU
        at every step while the next one is queued.
        """
        a_t, a_prev = self.alpha_t[i], self.alpha_prev[i]
        z0 = (latents - (1 - a_t).sqrt().item() * eps) / a_t.sqrt().item()  # 1. ẑ_0 from z_t and ε_θ
        direction = (1 - a_prev).sqrt().item() * eps  # 2. direction pointing to z_t (eta = 0: no noise)
        return a_prev.sqrt().item() * z0 + direction  # 3. z_{t-Δ}
