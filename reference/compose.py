"""Composition of the decoded layers for a removal set R (Eq. 6).

    x_final = sum_{k not in R} M_k x_k + (1 - sum_{k not in R} M_k) x_bg          (Eq. 6)

COPY_OUTSIDE (the default) keeps every pixel outside the union of the removed masks from the
input image and applies Eq. 6 inside it, so nothing the user did not ask to change moves.
EQ6 is the paper's formula over the whole image.

Shapes: images [..., 3, H, W], masks [..., N, H, W] with the same leading (batch) axes; `remove`
and the keys of `layers` are 0-based instance indices shared by the whole batch. Everything is
tensor arithmetic on the inputs' device, so the runtime calls it on the GPU unchanged.
"""

from __future__ import annotations

import enum
import numbers
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


class ComposeMode(enum.Enum):
    COPY_OUTSIDE = "copy-outside"
    EQ6 = "eq6"


def check_mode(mode: object) -> None:
    """The modes compare by identity: a string such as "copy-outside" matched neither and gave a
    composite of neither mode without a word."""
    if not isinstance(mode, ComposeMode):
        raise ValueError(
            f"compose mode must be a reference.compose.ComposeMode, got {mode!r}: pass "
            "ComposeMode.COPY_OUTSIDE or ComposeMode.EQ6 (ComposeMode(text) converts 'copy-outside' or 'eq6')"
        )


def _check_remove(remove: Sequence[int], n: int) -> list[int]:
    """The removal set as a list of distinct 0-based indices; a bad entry names itself and N,
    because a wrong index would otherwise silently erase the wrong person."""
    seen: list[int] = []
    for k in remove:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise ValueError(
                f"instance index {k!r} to remove is not an integer: give 0-based indices 0..{n - 1}"
            )
        k = int(k)
        if not 0 <= k < n:
            raise ValueError(
                f"instance index {k} to remove is out of range: there are {n} instances (0..{n - 1})"
            )
        if k in seen:
            raise ValueError(f"instance index {k} appears twice in the removal set (N = {n}): give each once")
        seen.append(k)
    return seen


def _removed_union(masks: Tensor, removed: Sequence[int]) -> Tensor:
    """Boolean [..., 1, H, W]: pixels inside any removed mask (all False for an empty R)."""
    if not removed:
        return torch.zeros_like(masks[..., :1, :, :], dtype=torch.bool)
    return (masks[..., list(removed), :, :] > 0).any(dim=-3, keepdim=True)


def layers_needed(masks: Tensor, remove: Sequence[int], mode: ComposeMode) -> list[int]:
    """The fg layers the composite reads (0-based, ascending); the background is always read.

    The pipeline decodes only these, so COPY_OUTSIDE skips kept layers that cannot reach a
    recomposed pixel: those whose mask misses the union of the removed masks (in every batch item).
    """
    n = masks.shape[-3]
    removed = _check_remove(remove, n)
    kept = [k for k in range(n) if k not in removed]
    if mode is ComposeMode.EQ6 or not kept:
        return kept
    if not removed:
        return []
    union = _removed_union(masks, removed)  # [..., 1, H, W]
    touches = ((masks[..., kept, :, :] > 0) & union).flatten(-2).any(dim=-1)  # [..., K]
    touches = touches.reshape(-1, len(kept)).any(dim=0).tolist()  # one device sync
    return [k for k, hit in zip(kept, touches, strict=True) if hit]


def _check_shapes(background: Tensor, masks: Tensor, image: Tensor | None) -> None:
    """Shape errors here name the tensors, not a broadcast failure deep inside torch."""
    if masks.dim() < 3:
        raise ValueError(f"masks must be [..., N, H, W], got shape {tuple(masks.shape)}")
    expected = (*masks.shape[:-3], 3, *masks.shape[-2:])
    if tuple(background.shape) != expected:
        raise ValueError(
            f"background has shape {tuple(background.shape)} but masks {tuple(masks.shape)} "
            f"need {expected}: decode the background at the mask size"
        )
    if image is not None and tuple(image.shape) != expected:
        raise ValueError(f"input image has shape {tuple(image.shape)}, expected {expected} (the mask size)")


def _gather_layers(layers: Mapping[int, Tensor], needed: list[int], like: Tensor) -> Tensor:
    """Stack the needed layers to [..., K, 3, H, W]; touches no other key of `layers`."""
    absent = [k for k in needed if k not in layers]
    if absent:
        raise ValueError(
            f"layer {absent[0]} is needed by the composite but was not decoded: "
            f"decode layers_needed(...) = {needed}"
        )
    stacked = []
    for k in needed:
        layer = layers[k]
        if layer.shape != like.shape:
            raise ValueError(f"layer {k} has shape {tuple(layer.shape)}, expected {tuple(like.shape)}")
        stacked.append(layer.to(like.dtype))
    return torch.stack(stacked, dim=-4)


def compose(
    background: Tensor,
    layers: Mapping[int, Tensor],
    masks: Tensor,
    remove: Sequence[int],
    mode: ComposeMode = ComposeMode.COPY_OUTSIDE,
    image: Tensor | None = None,
) -> Tensor:
    """background [..., 3, H, W], layers {k: [..., 3, H, W]}, masks [..., N, H, W] in {0, 1}
    -> the composite [..., 3, H, W]. Reads only the layers of `layers_needed`."""
    _check_shapes(background, masks, image)
    check_mode(mode)
    if mode is ComposeMode.COPY_OUTSIDE and image is None:
        raise ValueError(
            "the copy-outside composition needs the input image: pass image=, or use ComposeMode.EQ6"
        )
    removed = _check_remove(remove, masks.shape[-3])
    needed = layers_needed(masks, removed, mode)
    out = background
    if needed:
        kept_masks = masks[..., needed, :, :].to(background.dtype).unsqueeze(-3)  # [..., K, 1, H, W]
        kept = _gather_layers(layers, needed, background)  # [..., K, 3, H, W]
        out = (kept_masks * kept).sum(dim=-4) + (1 - kept_masks.sum(dim=-4)) * background  # Eq. 6
    if mode is ComposeMode.COPY_OUTSIDE:
        inside = _removed_union(masks, removed)
        out = torch.where(inside, out, image.to(device=out.device, dtype=out.dtype))
    return out.clone() if out is background else out


def cutout_rgba(layer: Tensor, mask: Tensor) -> Tensor:
    """A fg layer [..., 3, H, W] as RGBA [..., 4, H, W] with its mask [..., H, W] as alpha.

    Colours stay unpremultiplied, as PNG stores them, so the cut-out pastes back exactly."""
    if layer.shape[-3] != 3 or tuple(mask.shape) != tuple(layer.shape[:-3]) + tuple(layer.shape[-2:]):
        raise ValueError(
            f"cutout_rgba needs layer [..., 3, H, W] and mask [..., H, W], got {tuple(layer.shape)} "
            f"and {tuple(mask.shape)}"
        )
    return torch.cat([layer, mask.unsqueeze(-3).to(layer.dtype)], dim=-3)
