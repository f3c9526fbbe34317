"""Composition of the decoded layers for a removal set R (Eq. 6).

    x_final = sum_{k not in R} M_k x_k + (1 - sum_{k not in R} M_k) x_bg          (Eq. 6)

COPY_OUTSIDE (the default) keeps every pixel outside the union of the removed masks from the
input image and applies Eq. 6 inside it, so nothing the user did not ask to change moves.
EQ6 is the paper's formula over the whole image.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


class ComposeMode(enum.Enum):
    COPY_OUTSIDE = "copy-outside"
    EQ6 = "eq6"


def _check_remove(remove: Sequence[int], n: int) -> list[int]:
    remove = list(remove)
    bad = [k for k in remove if not 0 <= k < n]
    if bad:
        raise ValueError(
            f"instance index {bad[0]} to remove is out of range: there are {n} instances (0..{n - 1})"
        )
    if len(set(remove)) != len(remove):
        raise ValueError(f"instance indices to remove repeat: {remove}")
    return remove


def layers_needed(masks: Tensor, remove: Sequence[int], mode: ComposeMode) -> list[int]:
    """The fg layers the composite reads (0-based); the background is always read."""
    n = masks.shape[0]
    removed = set(_check_remove(remove, n))
    kept = [k for k in range(n) if k not in removed]
    if mode is ComposeMode.EQ6:
        return kept
    if not removed:
        return []
    union = masks[sorted(removed)].amax(dim=0) > 0
    return [k for k in kept if bool((masks[k].bool() & union).any())]


def compose(
    background: Tensor,
    layers: Mapping[int, Tensor],
    masks: Tensor,
    remove: Sequence[int],
    mode: ComposeMode = ComposeMode.COPY_OUTSIDE,
    image: Tensor | None = None,
) -> Tensor:
    """background [3, H, W], layers {k: [3, H, W]}, masks [N, H, W] in {0, 1} -> [3, H, W]."""
    needed = layers_needed(masks, remove, mode)
    absent = [k for k in needed if k not in layers]
    if absent:
        raise ValueError(f"layer {absent[0]} is needed by the composite but was not decoded")
    if mode is ComposeMode.COPY_OUTSIDE and image is None:
        raise ValueError("the copy-outside composition needs the input image")
    out = background.clone()
    if needed:
        kept_masks = masks[needed][:, None].to(background.dtype)  # [K, 1, H, W]
        kept = torch.stack([layers[k] for k in needed])
        out = (kept_masks * kept).sum(dim=0) + (1 - kept_masks.sum(dim=0)) * background  # Eq. 6
    if mode is ComposeMode.COPY_OUTSIDE:
        removed = list(remove)
        outside = (
            masks[removed].amax(dim=0, keepdim=True) == 0
            if removed
            else torch.ones_like(masks[:1], dtype=torch.bool)
        )
        out = torch.where(outside, image.to(out.dtype), out)
    return out


def cutout_rgba(layer: Tensor, mask: Tensor) -> Tensor:
    """A fg layer as RGBA with the instance mask as alpha, for PNG export."""
    return torch.cat([layer, mask[None].to(layer.dtype)])
