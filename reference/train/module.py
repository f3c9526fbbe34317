"""The part of a training step that has gradients, as one module (what accelerate wraps).

HMG tokens are computed once per sample and shared by its branches; each branch's context-mask
tokens come from its own map (Eq. 7). All fg and bg rows of the batch go through the layered UNet
in one call, as at inference.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from reference import conditions
from reference.model import MildModel
from reference.train.batch import StepInputs
from reference.train.config import LossWeights
from reference.train.losses import bg_loss, region_loss, total_loss


class TrainModule(nn.Module):
    def __init__(self, model: MildModel, weights: LossWeights):
        super().__init__()
        self.model = model
        self.weights = weights

    def contexts(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        """C_k = [text; pose; parsing; mask_k] for every fg row and every bg row."""
        hmg_tokens, mask_tokens = self.model.hmg(inputs.pose_maps, inputs.parsing_maps, inputs.mask_maps)
        fg, bg, row = [], [], 0
        for b, n in enumerate(inputs.counts):
            rows = conditions.branch_contexts(
                inputs.prompt_embeds[b : b + 1], hmg_tokens[b : b + 1], mask_tokens[row : row + n + 1]
            )
            fg.append(rows[:n])
            bg.append(rows[n:])
            row += n + 1
        return torch.cat(fg), torch.cat(bg)

    def forward(self, inputs: StepInputs, lam: float) -> tuple[Tensor, Tensor, Tensor]:
        """-> (Eq. 4 total, mean sum_k L_k, mean L_bg); the last two detached, for logging."""
        context_fg, context_bg = self.contexts(inputs)
        eps_fg, eps_bg = self.model.unet(
            inputs.sample_fg,
            inputs.sample_bg,
            inputs.mask_fg,
            inputs.mask_bg,
            context_fg,
            context_bg,
            inputs.timestep,
            **inputs.added,
        )
        target_fg = inputs.eps[inputs.fg_sample]
        fg_rows = region_loss(target_fg, eps_fg.float(), inputs.mask_fg, self.weights)  # Eq. 2 (+ band)
        bg_rows = bg_loss(inputs.eps, eps_bg.float())  # Eq. 3
        losses = total_loss(fg_rows, bg_rows, inputs.fg_sample, lam)  # Eq. 4
        return losses.total, losses.fg, losses.bg
