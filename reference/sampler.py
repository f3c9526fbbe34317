"""The N+1-branch denoising loop: every step is one UNet call over all branches.

Rows are laid out as the engine contract wants them: fg rows (one per instance) in the fg
inputs, the bg row in the bg inputs. With classifier-free guidance each part is doubled,
conditional rows first, then unconditional ones. All branches start from the same noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm.auto import tqdm

from reference.backend import Backend
from reference.ddim import DDIM


@dataclass
class BranchInputs:
    """What stays fixed over the loop, per row (rows already doubled for guidance)."""

    cond_fg: Tensor  # [Bf, 5, h, w]: branch mask and masked-image latent (9-ch input, minus z_t)
    cond_bg: Tensor  # [Bb, 5, h, w]
    mask_fg: Tensor  # [Bf, 1, h, w]
    mask_bg: Tensor  # [Bb, 1, h, w]
    context_fg: Tensor  # [Bf, L, C]
    context_bg: Tensor  # [Bb, L, C]
    added: dict[str, Tensor] = field(default_factory=dict)  # SDXL text_embeds/time_ids, all rows


def guide(eps: Tensor, copies: int, scale: float) -> Tensor:
    """Classifier-free guidance over [conditional; unconditional] rows."""
    if copies == 1:
        return eps
    cond, uncond = eps.chunk(2)
    return uncond + scale * (cond - uncond)


def denoise(
    backend: Backend,
    ddim: DDIM,
    noise: Tensor,
    rows: BranchInputs,
    n_fg: int,
    guidance: float,
    progress: bool = False,
) -> Tensor:
    """-> final latents [N + 1, 4, h, w]: the N fg layers, then the background."""
    copies = 1 if guidance == 1.0 else 2
    z = noise.expand(n_fg + 1, -1, -1, -1).clone()
    for i, t in enumerate(tqdm(ddim.timesteps, desc="denoising", unit="step", disable=not progress)):
        z_fg = z[:n_fg].repeat(copies, 1, 1, 1)
        z_bg = z[n_fg:].repeat(copies, 1, 1, 1)
        out = backend.run(
            "unet",
            {
                "sample_fg": torch.cat([z_fg, rows.cond_fg], dim=1),
                "sample_bg": torch.cat([z_bg, rows.cond_bg], dim=1),
                "mask_fg": rows.mask_fg,
                "mask_bg": rows.mask_bg,
                "context_fg": rows.context_fg,
                "context_bg": rows.context_bg,
                "timestep": torch.full((copies * (n_fg + 1),), float(t), device=z.device),
                **rows.added,
            },
        )
        eps = torch.cat([guide(out["eps_fg"], copies, guidance), guide(out["eps_bg"], copies, guidance)])
        z = ddim.step(i, z, eps.to(z.dtype))
    return z
