"""E_trans (App. C, Alg. 3): spatial offsets from the branch mask, added to the noisy latent.

The last convolution starts at zero, so an untrained model adds nothing and the layered UNet
begins as the base inpainting UNet.
"""

from __future__ import annotations

from torch import Tensor, nn

from reference.config import OffsetConfig

LATENT_CHANNELS = 4


class SpatialOffsets(nn.Module):
    def __init__(self, config: OffsetConfig):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, config.hidden, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(config.hidden, config.hidden, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(config.hidden, LATENT_CHANNELS, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, mask: Tensor) -> Tensor:
        """mask [B, 1, h, w] at latent size -> offsets [B, 4, h, w]."""
        return self.net(mask)
