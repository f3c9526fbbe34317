"""Human Morphology Guidance (Sec. 3.2) and the context-mask tokens (Eq. 7).

Pose keypoints, the parsing map and each branch's context mask are rendered to maps of a fixed
size, encoded by small conv nets, flattened and projected to the UNet's cross-attention width.
The branch's conditioning tokens are then [text; pose; parsing; mask] (DESIGN.md section 1).
The bg branch's mask tokens come from M_all, so all branches have the same token count.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reference.config import HMGConfig

POSE_CHANNELS = 18  # OpenPose-18 keypoints
PARSING_CLASSES = 20  # LIP / SCHP label ids 0..19


def render_pose_maps(keypoints: Tensor, image_size: tuple[int, int], config: HMGConfig) -> Tensor:
    """keypoints [N, 18, 3] (x, y in image pixels, confidence) -> Gaussian heatmaps [18, S, S].

    All instances share one map per keypoint (max over instances); confidence 0 draws nothing,
    so missing pose input renders as zero maps.
    """
    size = config.map_size
    height, width = image_size
    centres = (torch.arange(size, dtype=torch.float32, device=keypoints.device) + 0.5) / size
    x = keypoints[..., 0:1] / width  # [N, 18, 1] in [0, 1]
    y = keypoints[..., 1:2] / height
    dx2 = ((centres - x) * size) ** 2  # [N, 18, S]
    dy2 = ((centres - y) * size) ** 2
    heat = torch.exp(-(dy2[..., :, None] + dx2[..., None, :]) / (2 * config.pose_sigma**2))
    heat = heat * (keypoints[..., 2] > 0).to(heat.dtype)[..., None, None]
    if heat.shape[0] == 0:
        return heat.new_zeros(POSE_CHANNELS, size, size)
    return heat.amax(dim=0)


def render_parsing_maps(parsing: Tensor | None, config: HMGConfig) -> Tensor:
    """parsing [H, W] label ids -> per-class coverage [20, S, S]; None renders zero maps."""
    size = config.map_size
    if parsing is None:
        return torch.zeros(PARSING_CLASSES, size, size)
    onehot = F.one_hot(parsing.long(), PARSING_CLASSES).permute(2, 0, 1).float()
    return F.adaptive_avg_pool2d(onehot[None], size)[0]


def context_masks(masks: Tensor) -> Tensor:
    """Eq. 7 per fg branch, M_all for the bg branch: [N, H, W] -> [N + 1, 1, H, W]."""
    total = masks.sum(dim=0, keepdim=True)
    others = (total - masks).clamp(0, 1)
    return torch.cat([others, total.clamp(0, 1)])[:, None]


def render_mask_maps(masks: Tensor, config: HMGConfig) -> Tensor:
    """[B, 1, H, W] masks -> area coverage on the map grid [B, 1, S, S]."""
    return F.adaptive_avg_pool2d(masks.float(), config.map_size)


def _map_encoder(channels: int, hidden: int, downsamplings: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(channels, hidden, 3, padding=1), nn.SiLU()]
    for _ in range(downsamplings):
        layers += [nn.Conv2d(hidden, hidden, 3, stride=2, padding=1), nn.SiLU()]
    return nn.Sequential(*layers)


def _tokens(features: Tensor) -> Tensor:
    return features.flatten(2).transpose(1, 2)  # [B, C, g, g] -> [B, g*g, C]


class MorphologyGuidance(nn.Module):
    """Encodes pose, parsing and context-mask maps into cross-attention tokens."""

    def __init__(self, config: HMGConfig, width: int):
        super().__init__()
        patch = config.map_size // config.token_grid
        if patch * config.token_grid != config.map_size or patch & (patch - 1):
            raise ValueError(
                f"HMG map_size {config.map_size} must be token_grid {config.token_grid} times a power of two"
            )
        down = int(math.log2(patch))
        self.pose_encoder = _map_encoder(POSE_CHANNELS, config.hidden, down)
        self.parsing_encoder = _map_encoder(PARSING_CLASSES, config.hidden, down)
        self.mask_encoder = nn.Conv2d(1, config.hidden, patch, stride=patch)  # "shallow conv"
        self.pose_proj = nn.Linear(config.hidden, width)
        self.parsing_proj = nn.Linear(config.hidden, width)
        self.mask_proj = nn.Linear(config.hidden, width)

    def forward(self, pose_maps: Tensor, parsing_maps: Tensor, mask_maps: Tensor) -> tuple[Tensor, Tensor]:
        """-> (hmg_tokens [B_img, 2T, C], mask_tokens [B_branch, T, C])."""
        pose = self.pose_proj(_tokens(self.pose_encoder(pose_maps)))
        parsing = self.parsing_proj(_tokens(self.parsing_encoder(parsing_maps)))
        mask = self.mask_proj(_tokens(F.silu(self.mask_encoder(mask_maps))))
        return torch.cat([pose, parsing], dim=1), mask
