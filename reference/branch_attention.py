"""Attention of the layered UNet: per-branch Q/K/V (Eq. 1) and SMA in self-attention (Eq. 9).

A batch holds the fg rows first and the bg rows after them. Every attention projects Q/K/V of
the fg rows with the fg weights and of the bg rows with the bg weights, in the same call, so
all N+1 branches run as one UNet batch. The weights come in one of two forms:
- unmerged: a peft LoRA layer with adapters `fg` and `bg` (training, the reference);
- merged: a `BranchLinear` holding the two folded weight sets (after `mild-merge`), or for export
  a `LowRankBranchLinear` holding the fg set and the bg set's low-rank difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from peft.tuners.lora import LoraLayer
from torch import Tensor, nn

from reference import sma

BRANCHES = ("fg", "bg")
PROJECTIONS = ("to_q", "to_k", "to_v")


@dataclass
class BranchContext:
    """What every attention layer needs to know about the batch besides its hidden states."""

    n_fg: int  # rows [0, n_fg) are fg branches, the rest bg
    token_masks: list[Tensor]  # per UNet level: [B, S_level] branch mask on that token grid


def split_branches(x: Tensor, n_fg: int) -> tuple[Tensor, Tensor]:
    """The fg rows and the bg rows of a batch.

    Split with both sizes given rather than sliced: under torch.export (2.11) `x[n_fg:]` gets a
    new unbacked size (the slice clamps to the batch), and the reshape into heads then fails on
    a guard it cannot decide; the sizes given here stay the traced batch symbols.
    """
    fg, bg = x.split([n_fg, x.shape[0] - n_fg])
    return fg, bg


class BranchLinear(nn.Module):
    """A Q/K/V projection with one weight per branch: fg rows times W_fg, bg rows times W_bg."""

    def __init__(self, weight_fg: Tensor, weight_bg: Tensor, bias: Tensor | None = None):
        super().__init__()
        self.weight_fg = nn.Parameter(weight_fg, requires_grad=False)
        self.weight_bg = nn.Parameter(weight_bg, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    def forward(self, x: Tensor, n_fg: int) -> Tensor:
        fg, bg = split_branches(x, n_fg)
        return torch.cat([F.linear(fg, self.weight_fg, self.bias), F.linear(bg, self.weight_bg, self.bias)])


class LowRankBranchLinear(nn.Module):
    """A merged Q/K/V projection kept as W_fg plus the bg set's difference in factored form,
    W_bg = W_fg + up @ down. The difference of two folded LoRA sets has rank at most the sum of
    their ranks (Eq. 1), so the bg set costs a few percent of a weight set instead of a whole one
    (29% of SDXL's UNet is Q/K/V), and one GEMM serves all rows, bg rows adding up(down x)."""

    def __init__(self, weight_fg: Tensor, up: Tensor, down: Tensor, bias: Tensor | None = None):
        super().__init__()
        self.weight_fg = nn.Parameter(weight_fg, requires_grad=False)
        self.up = nn.Parameter(up, requires_grad=False)  # [out, r]
        self.down = nn.Parameter(down, requires_grad=False)  # [r, in]
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    def forward(self, x: Tensor, n_fg: int) -> Tensor:
        y = F.linear(x, self.weight_fg, self.bias)
        y_fg, y_bg = split_branches(y, n_fg)
        _, x_bg = split_branches(x, n_fg)
        return torch.cat([y_fg, y_bg + F.linear(F.linear(x_bg, self.down), self.up)])


MERGED_PROJECTIONS = (BranchLinear, LowRankBranchLinear)
FUSED = "branch_fused"  # the attribute of a diffusers Attention that holds its fused projections


def projection_groups(attn: Attention) -> tuple[tuple[str, ...], ...]:
    """The projections that read the same tokens: self-attention's Q, K and V; cross-attention's
    Q (the image) apart from its K and V (the text)."""
    return (PROJECTIONS[:1], PROJECTIONS[1:]) if attn.is_cross_attention else (PROJECTIONS,)


class FusedBranchLinear(BranchLinear):
    """Merged projections that read the same tokens as one: one GEMM per branch instead of one
    per branch and projection, and one concatenation of the branches' rows instead of one per
    projection.

    The fused weights are the originals concatenated, and the originals become views into them:
    nothing is stored twice, and the unfused path reads the same numbers. (Casting or moving the
    model afterwards would copy each view apart: fuse last.)
    """

    def __init__(self, parts: tuple[BranchLinear, ...]):
        fused = {b: torch.cat([getattr(p, f"weight_{b}") for p in parts]) for b in BRANCHES}
        bias = None if parts[0].bias is None else torch.cat([p.bias for p in parts])
        super().__init__(fused["fg"], fused["bg"], bias)
        self.sizes = [p.weight_fg.shape[0] for p in parts]
        _share_rows(parts, self, ("weight_fg", "weight_bg", *(("bias",) if bias is not None else ())))

    def forward(self, x: Tensor, n_fg: int) -> tuple[Tensor, ...]:
        return super().forward(x, n_fg).split(self.sizes, dim=-1)


@torch.library.custom_op("mild::accumulate_matmul", mutates_args=("out",))
def accumulate_matmul(out: Tensor, a: Tensor, b: Tensor) -> None:
    """out += a @ b, in place, where `out` may be a view into a larger buffer (rows with a
    leading stride: the GEMM accumulates into them where they lie). An op of its own for
    torch.compile: Inductor functionalises an in-place `addmm_` on a view into an out-of-place
    GEMM and a kernel copying its result back into the view (one a fused projection, 140 a
    compiled SDXL step), while a custom op that declares its mutation is reinplaced."""
    out.addmm_(a, b)


class FusedLowRankBranchLinear(nn.Module):
    """The low-rank form fused (`LowRankBranchLinear`: W_bg = W_fg + up @ down), for the PyTorch
    deployment. The fg weights and the downs are one matrix, so one GEMM gives every row its fg
    projection and every row its down x (the fg rows' a few percent of wasted columns, where a GEMM
    of its own was a skinny kernel a projection: 130 launches of about 4 us a compiled SDXL step
    on an H200, bench/RESULTS.md); then the bg rows add up(down x) in place by one thin GEMM
    (beta = 1: their output is a contiguous slice of rows, so nothing is concatenated). The ups
    sit on the diagonal of one [sum of outputs, parts x rank] matrix, so each part's term reads
    only its own factors. The originals become views into the fused tensors."""

    def __init__(self, parts: tuple[LowRankBranchLinear, ...]):
        super().__init__()
        rank = parts[0].down.shape[0]
        self.sizes = [p.weight_fg.shape[0] for p in parts]
        self.width = sum(self.sizes)
        rows = [p.weight_fg for p in parts] + [p.down for p in parts]
        self.weight = nn.Parameter(torch.cat(rows), requires_grad=False)
        self.up = nn.Parameter(torch.block_diag(*(p.up for p in parts)), requires_grad=False)
        self.bias = None
        if parts[0].bias is not None:  # the down rows get none: zeros
            bias = torch.cat([p.bias for p in parts] + [parts[0].bias.new_zeros(rank * len(parts))])
            self.bias = nn.Parameter(bias, requires_grad=False)
        start = 0
        for i, (part, size) in enumerate(zip(parts, self.sizes, strict=True)):
            part.weight_fg.data = self.weight.data[start : start + size]
            part.down.data = self.weight.data[self.width + i * rank : self.width + (i + 1) * rank]
            part.up.data = self.up.data[start : start + size, i * rank : (i + 1) * rank]
            if self.bias is not None:
                part.bias.data = self.bias.data[start : start + size]
            start += size

    def forward(self, x: Tensor, n_fg: int) -> tuple[Tensor, ...]:
        y = F.linear(x, self.weight, self.bias)
        extra = y.shape[-1] - self.width  # views by narrow: autograd refuses in-place on split's
        out, low = y.narrow(-1, 0, self.width), y.narrow(-1, self.width, extra)
        bg_rows = x.shape[0] - n_fg
        out_bg, low_bg = out.narrow(0, n_fg, bg_rows), low.narrow(0, n_fg, bg_rows)
        accumulate_matmul(out_bg.view(-1, self.width), low_bg.view(-1, extra), self.up.T)
        return out.split(self.sizes, dim=-1)


def _share_rows(parts: tuple[nn.Module, ...], fused: nn.Module, names: tuple[str, ...]) -> None:
    """Each part's tensors `names` become views of its rows of `fused`'s concatenations."""
    start = 0
    for part in parts:
        size = part.weight_fg.shape[0]
        for name in names:
            getattr(part, name).data = getattr(fused, name).data[start : start + size]
        start += size


def fuse_projections(unet: nn.Module) -> int:
    """Give every merged attention of `unet` its fused projections, one module per group of
    `projection_groups`, whole sets (`FusedBranchLinear`) or low-rank (`FusedLowRankBranchLinear`);
    -> how many attentions were fused."""
    fused = 0
    for module in unet.modules():
        if not isinstance(module, Attention) or not isinstance(module.processor, BranchAttnProcessor):
            continue
        groups = [tuple(getattr(module, name) for name in group) for group in projection_groups(module)]
        parts = [p for group in groups for p in group]
        if len({p.bias is None for p in parts}) > 1:
            continue  # biases on some projections only
        if all(type(p) is BranchLinear for p in parts):
            kind = FusedBranchLinear
        elif (
            all(type(p) is LowRankBranchLinear for p in parts) and len({p.down.shape[0] for p in parts}) == 1
        ):
            kind = FusedLowRankBranchLinear
        else:
            continue  # unmerged, or the two forms mixed
        setattr(module, FUSED, nn.ModuleList(kind(group) for group in groups))
        fused += 1
    return fused


def lora_delta(layer: LoraLayer, branch: str, x: Tensor) -> Tensor:
    """B A x times peft's alpha/rank scaling for one adapter."""
    return layer.lora_B[branch](layer.lora_A[branch](x)) * layer.scaling[branch]


class BranchAttnProcessor(nn.Module):
    """Replaces diffusers' attention processor inside the layered UNet.

    Holds the learnable per-(branch, projection) LoRA scales of this layer (Eq. 1's alpha_p^(b))
    and, for self-attention, the per-head SMA bias alpha [H, 2, 2] (zeros: vanilla attention).
    A runtime may set `context_kv`, cross-attention's K and V already projected from this call's
    context (`context_projections`), to project the context once per image instead of per step.
    """

    def __init__(self, heads: int, self_attention: bool, level: int):
        super().__init__()
        self.level = level
        self.lora_scale = nn.ParameterDict({b: nn.Parameter(torch.ones(len(PROJECTIONS))) for b in BRANCHES})
        self.sma_alpha = nn.Parameter(torch.zeros(heads, 2, 2)) if self_attention else None
        self.context_kv: tuple[Tensor, Tensor] | None = None

    def project(self, attn: Attention, index: int, x: Tensor, n_fg: int) -> Tensor:
        layer = getattr(attn, PROJECTIONS[index])
        if isinstance(layer, MERGED_PROJECTIONS):
            return layer(x, n_fg)
        if not isinstance(layer, LoraLayer):
            return layer(x)
        fg, bg = split_branches(x, n_fg)
        deltas = [
            lora_delta(layer, "fg", fg) * self.lora_scale["fg"][index],
            lora_delta(layer, "bg", bg) * self.lora_scale["bg"][index],
        ]
        return layer.base_layer(x) + torch.cat(deltas)

    def projections(self, attn: Attention, x: Tensor, context: Tensor, n_fg: int) -> tuple[Tensor, ...]:
        """Q from `x`, K and V from `context` (`x` in self-attention), by the attention's fused
        projections where it has them; in cross-attention K and V from `context_kv` when set."""
        fused = getattr(attn, FUSED, None)
        if not attn.is_cross_attention:
            if fused is not None:
                return fused[0](x, n_fg)
            return tuple(self.project(attn, i, x, n_fg) for i in range(3))
        q = fused[0](x, n_fg)[0] if fused is not None else self.project(attn, 0, x, n_fg)
        kv = self.context_kv if self.context_kv is not None else self.context_projections(attn, context, n_fg)
        return (q, *kv)

    def context_projections(self, attn: Attention, context: Tensor, n_fg: int) -> tuple[Tensor, Tensor]:
        """Cross-attention's K and V of `context` (the encoder states, `attn.norm_cross` applied)."""
        fused = getattr(attn, FUSED, None)
        if fused is not None:
            k, v = fused[1](context, n_fg)
            return k, v
        return self.project(attn, 1, context, n_fg), self.project(attn, 2, context, n_fg)

    def __call__(  # diffusers reads the processor's __call__ signature to route kwargs
        self,
        attn: Attention,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor | None = None,
        attention_mask: Tensor | None = None,
        temb: Tensor | None = None,
        branches: BranchContext | None = None,
    ) -> Tensor:
        if branches is None:
            raise ValueError("the layered UNet's attention needs a BranchContext (call LayeredUNet)")
        if attention_mask is not None or attn.spatial_norm is not None or attn.group_norm is not None:
            raise NotImplementedError("attention masks and spatial/group norm are not used by MILD UNets")
        residual = hidden_states
        batch = hidden_states.shape[0]
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)

        def heads(x: Tensor) -> Tensor:
            return x.view(batch, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)

        q, k, v = (heads(x) for x in self.projections(attn, hidden_states, context, branches.n_fg))
        if attn.norm_q is not None:
            q, k = attn.norm_q(q), attn.norm_k(k)

        if self.sma_alpha is None:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            m = branches.token_masks[self.level]
            if m.shape[1] != q.shape[2]:
                raise ValueError(
                    f"SMA token mask of level {self.level} has {m.shape[1]} tokens but the "
                    f"attention has {q.shape[2]}: the UNet's block layout is not a standard "
                    "UNet2DConditionModel"
                )
            out = sma.attention(q, k, v, m, m, self.sma_alpha)

        out = out.transpose(1, 2).reshape(batch, -1, q.shape[1] * q.shape[3]).to(q.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def attention_levels(unet: nn.Module) -> dict[str, int]:
    """The token-grid level (0 = latent size, each level halves it) of every attention module.

    In a UNet2DConditionModel down block i attends before its downsampler (level i), the mid
    block at the last level, and up block j at level (levels - 1 - j), before its upsampler.
    """
    last = len(unet.down_blocks) - 1
    parts = [(f"down_blocks.{i}", b, i) for i, b in enumerate(unet.down_blocks)]
    parts.append(("mid_block", unet.mid_block, last))
    parts += [(f"up_blocks.{j}", b, last - j) for j, b in enumerate(unet.up_blocks)]
    levels = {}
    for prefix, block, level in parts:
        if block is None:
            continue
        for name, module in block.named_modules():
            if isinstance(module, Attention):
                levels[f"{prefix}.{name}"] = level
    return levels


def install_processors(unet: nn.Module) -> None:
    """Give every attention of `unet` a BranchAttnProcessor (a registered submodule)."""
    levels = attention_levels(unet)
    for name, module in unet.named_modules():
        if isinstance(module, Attention):
            module.set_processor(
                BranchAttnProcessor(module.heads, not module.is_cross_attention, levels[name])
            )


def processors(unet: nn.Module) -> dict[str, BranchAttnProcessor]:
    return {
        name: module.processor
        for name, module in unet.named_modules()
        if isinstance(module, Attention) and isinstance(module.processor, BranchAttnProcessor)
    }
