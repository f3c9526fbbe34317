"""The training losses: Eq. 2 (fg, inside M_k), Eq. 3 (bg, everywhere), Eq. 4 (total).

All terms are per-pixel squared errors on the noise prediction at latent size. Eq. 2's
||M_k (eps - eps_k)||^2 and Eq. 3's ||eps - eps_bg||^2 are both divided by the same count
(channels x latent pixels), so the two terms keep the paper's relative scale while staying
independent of the resolution. The region-aware terms of App. C act on the boundary band of
M_k (dilate minus erode) only: a weighted residual and a penalty on the residual's spatial
gradient, so the fg layer's edges match where the composite switches layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from reference.train.config import LossWeights


def fg_loss(eps: Tensor, eps_k: Tensor, mask: Tensor) -> Tensor:
    """Eq. 2 per row: eps, eps_k [R, 4, h, w], latent masks M_k [R, 1, h, w] -> [R]."""
    return (mask * (eps - eps_k) ** 2).mean(dim=(1, 2, 3))


def bg_loss(eps: Tensor, eps_bg: Tensor) -> Tensor:
    """Eq. 3 per row: every latent pixel counts -> [R]."""
    return ((eps - eps_bg) ** 2).mean(dim=(1, 2, 3))


def boundary_band(mask: Tensor, radius: int) -> Tensor:
    """dilate(M) - erode(M) with a (2 radius + 1)^2 square: the pixels within `radius` of the edge."""
    size = 2 * radius + 1
    dilated = F.max_pool2d(mask, size, stride=1, padding=radius)
    eroded = -F.max_pool2d(-mask, size, stride=1, padding=radius)
    return dilated - eroded


def band_residual_loss(eps: Tensor, eps_k: Tensor, band: Tensor) -> Tensor:
    """Region-aware residual term: squared error inside the band -> [R]."""
    return (band * (eps - eps_k) ** 2).mean(dim=(1, 2, 3))


def band_gradient_loss(eps: Tensor, eps_k: Tensor, band: Tensor) -> Tensor:
    """Region-aware gradient term: squared finite differences of the residual, both ends in the band."""
    r = eps - eps_k
    dx = (r[..., :, 1:] - r[..., :, :-1]) ** 2 * (band[..., :, 1:] * band[..., :, :-1])
    dy = (r[..., 1:, :] - r[..., :-1, :]) ** 2 * (band[..., 1:, :] * band[..., :-1, :])
    return dx.mean(dim=(1, 2, 3)) + dy.mean(dim=(1, 2, 3))


def region_loss(eps: Tensor, eps_k: Tensor, mask: Tensor, weights: LossWeights) -> Tensor:
    """Alg. 2 line 14's RegionLoss per fg row: Eq. 2 plus the weighted band terms -> [R]."""
    loss = fg_loss(eps, eps_k, mask)
    if weights.boundary or weights.gradient:
        band = boundary_band(mask, weights.band_radius)
        if weights.boundary:
            loss = loss + weights.boundary * band_residual_loss(eps, eps_k, band)
        if weights.gradient:
            loss = loss + weights.gradient * band_gradient_loss(eps, eps_k, band)
    return loss


@dataclass
class Losses:
    total: Tensor  # Eq. 4, what backward runs on
    fg: Tensor  # mean over samples of sum_k L_k (detached)
    bg: Tensor  # mean over samples of L_bg (detached)


def total_loss(fg_rows: Tensor, bg_rows: Tensor, fg_sample: Tensor, lam: float) -> Losses:
    """Eq. 4 averaged over samples: lambda_t sum_k L_k + L_bg.

    fg_rows [R_fg] per fg row, bg_rows [B] per sample, fg_sample [R_fg] the sample of each fg row.
    """
    per_sample = bg_rows.new_zeros(bg_rows.shape[0]).index_add(0, fg_sample, fg_rows)
    fg, bg = per_sample.mean(), bg_rows.mean()
    return Losses(total=lam * fg + bg, fg=fg.detach(), bg=bg.detach())
