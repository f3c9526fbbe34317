"""Loss terms: Eq. 2 counts only pixels inside M_k, Eq. 3 all pixels, the region terms only the band."""

from __future__ import annotations

import torch

from reference.train.config import LossWeights
from reference.train.losses import (
    band_gradient_loss,
    band_residual_loss,
    bg_loss,
    boundary_band,
    fg_loss,
    region_loss,
    total_loss,
)


def random_pair(seed: int, shape=(3, 4, 9, 11)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


def box_mask(rows: int = 3, h: int = 9, w: int = 11) -> torch.Tensor:
    mask = torch.zeros(rows, 1, h, w)
    mask[:, :, 2:7, 3:8] = 1
    return mask


def test_fg_loss_ignores_pixels_outside_the_mask():
    eps, pred = random_pair(0)
    mask = box_mask()
    changed = pred + 10 * torch.randn(pred.shape) * (1 - mask)  # only outside M_k
    torch.testing.assert_close(fg_loss(eps, changed, mask), fg_loss(eps, pred, mask), rtol=0, atol=0)
    inside = pred + torch.randn(pred.shape) * mask
    assert (fg_loss(eps, inside, mask) != fg_loss(eps, pred, mask)).all()
    expected = (mask * (eps - pred) ** 2).sum(dim=(1, 2, 3)) / eps[0].numel()  # Eq. 2 over C h w
    torch.testing.assert_close(fg_loss(eps, pred, mask), expected)


def test_bg_loss_counts_every_pixel():
    eps, pred = random_pair(1)
    torch.testing.assert_close(bg_loss(eps, pred), ((eps - pred) ** 2).mean(dim=(1, 2, 3)))
    for y, x in ((0, 0), (8, 10), (4, 5)):
        moved = pred.clone()
        moved[:, :, y, x] += 1.0
        assert (bg_loss(eps, moved) != bg_loss(eps, pred)).all()


def test_boundary_band_is_dilation_minus_erosion():
    band = boundary_band(box_mask(1), radius=1)[0, 0]
    expected = torch.zeros(9, 11)
    expected[1:8, 2:9] = 1  # dilated box
    expected[3:6, 4:7] = 0  # minus the eroded box
    torch.testing.assert_close(band, expected)


def test_region_terms_only_see_the_band():
    eps, pred = random_pair(2)
    mask = box_mask()
    band = boundary_band(mask, 1)
    outside_band = pred + 10 * torch.randn(pred.shape) * (1 - band)
    for term in (band_residual_loss, band_gradient_loss):
        torch.testing.assert_close(term(eps, outside_band, band), term(eps, pred, band), rtol=0, atol=0)
        assert (term(eps, pred + torch.randn(pred.shape) * band, band) != term(eps, pred, band)).all()


def test_region_loss_weights():
    eps, pred = random_pair(3)
    mask = box_mask()
    band = boundary_band(mask, 1)
    core = fg_loss(eps, pred, mask)
    torch.testing.assert_close(region_loss(eps, pred, mask, LossWeights()), core)  # default: core only
    weighted = region_loss(eps, pred, mask, LossWeights(boundary=0.5, gradient=2.0))
    expected = core + 0.5 * band_residual_loss(eps, pred, band) + 2.0 * band_gradient_loss(eps, pred, band)
    torch.testing.assert_close(weighted, expected)


def test_total_loss_is_eq4_averaged_over_samples():
    fg_rows = torch.tensor([1.0, 2.0, 3.0, 4.0])  # sample 0 has 1 instance, sample 1 has 3
    bg_rows = torch.tensor([0.5, 1.5])
    losses = total_loss(fg_rows, bg_rows, torch.tensor([0, 1, 1, 1]), lam=0.25)
    assert losses.fg.item() == (1.0 + 9.0) / 2
    assert losses.bg.item() == 1.0
    assert losses.total.item() == 0.25 * 5.0 + 1.0
