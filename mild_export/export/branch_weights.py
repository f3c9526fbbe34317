"""How the UNet graph holds the two Q/K/V weight sets: whole, or the bg set as a low-rank difference.

Folded LoRA sets differ by a matrix of rank at most the two ranks together (Eq. 1):

    W_bg - W_fg = c (s_bg B_bg A_bg - s_fg B_fg A_fg),   rank <= 2 r

so `low-rank` (the default) stores W_fg and two thin factors of the difference. SDXL's Q/K/V are
29% of its UNet: whole sets make the engine 1.29x one UNet's weights, the factors 1.014x.
The factors come from a truncated SVD of the difference and are checked against it, so merged
folders (which hold only W_fg and W_bg) convert too; a projection whose difference is not of low
rank (weights edited after merging) keeps both sets whole.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from diffusers.models.attention_processor import Attention
from torch import Tensor, nn

from reference.branch_attention import PROJECTIONS, BranchLinear, LowRankBranchLinear


class BranchWeights(enum.Enum):
    LOW_RANK = "low-rank"
    FULL = "full"


@dataclass
class Conversion:
    """What `branch_weights_form` did, for the log and the manifest."""

    rank: int
    factored: int = 0  # projections whose bg set became two factors
    whole: int = 0  # projections kept as two whole sets


def low_rank_difference(weight_fg: Tensor, weight_bg: Tensor, rank: int) -> tuple[Tensor, Tensor] | None:
    """(up [out, rank], down [rank, in]) with W_fg + up @ down = W_bg to the weights' own rounding,
    or None when the difference has a higher rank. Identical sets give zero factors of the same
    shapes, so an untrained model's graph times like a trained one's."""
    rank = min(rank, *weight_fg.shape)
    diff = weight_bg.double() - weight_fg.double()
    # both sets were rounded to their dtype after folding: their difference carries that noise
    tolerance = 2 * torch.finfo(weight_bg.dtype).eps * float(weight_bg.double().norm())
    if float(diff.norm()) <= tolerance:
        up, down = diff.new_zeros(diff.shape[0], rank), diff.new_zeros(rank, diff.shape[1])
    else:
        u, s, v = torch.svd_lowrank(diff, q=min(rank + 8, *diff.shape), niter=4)
        up, down = u[:, :rank] * s[:rank], v[:, :rank].T
        if float((diff - up @ down).norm()) > tolerance:
            return None
    return up.to(weight_fg.dtype).contiguous(), down.to(weight_fg.dtype).contiguous()


Swap = tuple[Attention, str, BranchLinear]  # an attention, its projection's name, the layer replaced


def convert_branch_weights(
    unet: nn.Module, form: BranchWeights, rank: int, swapped: list[Swap] | None = None
) -> Conversion:
    """The merged UNet's `BranchLinear` Q/K/V as `LowRankBranchLinear` (form low-rank), in place;
    each swap is appended to `swapped` as it is made, so a caller can undo even a partial one."""
    conversion = Conversion(rank=rank)
    for attn in (m for m in unet.modules() if isinstance(m, Attention)):
        for proj in PROJECTIONS:
            layer = getattr(attn, proj)
            if not isinstance(layer, BranchLinear):
                continue
            factors = None
            if form is BranchWeights.LOW_RANK:
                factors = low_rank_difference(layer.weight_fg, layer.weight_bg, rank)
            if factors is None:
                conversion.whole += 1
                continue
            setattr(attn, proj, LowRankBranchLinear(layer.weight_fg, *factors, bias=layer.bias))
            if swapped is not None:
                swapped.append((attn, proj, layer))
            conversion.factored += 1
    return conversion


@contextmanager
def branch_weights_form(unet: nn.Module, form: BranchWeights, rank: int) -> Iterator[Conversion]:
    """While the block runs, the merged UNet's Q/K/V are in `form` (`convert_branch_weights`);
    afterwards the model is as it was, so exporting never changes the caller's model."""
    swapped: list[Swap] = []
    try:
        yield convert_branch_weights(unet, form, rank, swapped)
    finally:
        for attn, proj, layer in swapped:
            setattr(attn, proj, layer)
