"""Fused projections: a merged attention's Q/K/V (or K/V) as one module, whole sets or low-rank,
same numbers, no weight stored twice; models that are not merged are left alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

from mild_export.bench.weights import stored_bytes
from mild_export.export.branch_weights import BranchWeights, convert_branch_weights
from reference.branch_attention import FUSED, FusedBranchLinear, FusedLowRankBranchLinear, fuse_projections
from reference.merge import merge_model
from tests.conftest import make_trained_tiny
from tests.reference.test_layered_unet import unet_inputs


def run_unet(model, inputs):
    with torch.no_grad():
        return torch.cat(model.unet(**inputs))


@pytest.mark.parametrize("form", list(BranchWeights), ids=lambda f: f.value)
def test_every_merged_attention_is_fused_and_computes_the_same(form):
    merged = merge_model(make_trained_tiny(seed=3))
    conversion = convert_branch_weights(merged.unet, form, rank=2 * merged.config.lora.rank)
    inputs = unet_inputs(n_fg=3, seed=4)
    want = run_unet(merged, inputs)
    before = stored_bytes(merged.unet)
    attentions = [m for m in merged.unet.modules() if isinstance(m, Attention)]
    assert fuse_projections(merged.unet) == len(attentions) > 0
    zeros = 0  # the fused low-rank ups' off-diagonal blocks
    for attn in attentions:
        groups = getattr(attn, FUSED)
        width = attn.inner_dim
        assert [g.sizes for g in groups] == (
            [[width], [width] * 2] if attn.is_cross_attention else [[width] * 3]
        )
        kind = FusedLowRankBranchLinear if form is BranchWeights.LOW_RANK else FusedBranchLinear
        assert all(type(g) is kind for g in groups)
        fused_fg = groups[-1].weight if form is BranchWeights.LOW_RANK else groups[-1].weight_fg
        # the originals are views into the fused weights
        assert attn.to_v.weight_fg.untyped_storage().data_ptr() == fused_fg.untyped_storage().data_ptr()
        if form is BranchWeights.LOW_RANK:
            for part, group in ((attn.to_v.down, groups[-1].weight), (attn.to_v.up, groups[-1].up)):
                assert part.untyped_storage().data_ptr() == group.untyped_storage().data_ptr()
            zeros += sum(g.up.numel() - sum(s * conversion.rank for s in g.sizes) for g in groups)
            zeros += sum(g.bias.numel() - sum(g.sizes) for g in groups if g.bias is not None)
    assert stored_bytes(merged.unet) == before + 4 * zeros
    got = run_unet(merged, inputs)
    # the same dot products, the GEMMs only wider: float32 rounding at most
    assert (got - want).abs().max() <= 1e-6 * want.abs().max()


def test_a_model_that_is_not_merged_is_left_alone():
    trained = make_trained_tiny(seed=3)  # peft LoRA layers: nothing to fuse
    assert fuse_projections(trained.unet) == 0
    assert not any(hasattr(m, FUSED) for m in trained.unet.modules())


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
def test_low_rank_fused_equals_its_parts(bias):
    """The fg weights and the downs in one GEMM: each part's output as the part computes it, bg
    rows with their low-rank term and fg rows without, biases on the projections only."""
    from reference.branch_attention import LowRankBranchLinear

    g = torch.Generator().manual_seed(0)
    sizes, width_in, rank = (24, 16, 16), 40, 4

    def part(size):
        return LowRankBranchLinear(
            torch.randn(size, width_in, generator=g),
            torch.randn(size, rank, generator=g),
            torch.randn(rank, width_in, generator=g),
            torch.randn(size, generator=g) if bias else None,
        )

    parts = tuple(part(size) for size in sizes)
    x, n_fg = torch.randn(3, 7, width_in, generator=g), 2
    with torch.no_grad():
        want = [p(x, n_fg) for p in parts]
        fused = FusedLowRankBranchLinear(parts)
        got = fused(x, n_fg)
    assert fused.weight.shape == (sum(sizes) + rank * len(sizes), width_in)
    assert [tuple(t.shape) for t in got] == [(3, 7, size) for size in sizes]
    for w, o in zip(want, got, strict=True):
        torch.testing.assert_close(o, w, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got[0][n_fg:], F.linear(x[n_fg:], parts[0].weight_fg, parts[0].bias), atol=1e-3)


def test_compiled_low_rank_adds_the_bg_term_where_the_rows_lie():
    """Under torch.compile the bg rows' up(down x) accumulates into the projection's output in
    place (mild::accumulate_matmul): Inductor made an in-place `addmm_` on that view an
    out-of-place GEMM plus a kernel copying it back, 140 kernels a compiled SDXL step."""
    from torch._inductor.utils import run_and_get_code

    from reference.branch_attention import LowRankBranchLinear

    g = torch.Generator().manual_seed(1)
    width_in, rank = 32, 4
    parts = tuple(
        LowRankBranchLinear(
            torch.randn(32, width_in, generator=g),
            torch.randn(32, rank, generator=g),
            torch.randn(rank, width_in, generator=g),
        )
        for _ in range(3)
    )
    fused, x = FusedLowRankBranchLinear(parts), torch.randn(3, 8, width_in, generator=g)
    torch._dynamo.reset()
    with torch.no_grad():
        want = fused(x, 2)
        got, code = run_and_get_code(torch.compile(fused, dynamic=False), x, 2)
    for w, o in zip(want, got, strict=True):
        torch.testing.assert_close(o, w, rtol=1e-5, atol=1e-5)
    (wrapper,) = code
    assert wrapper.count("torch.ops.mild.accumulate_matmul.default(") == 1
    assert "cpp_fused" not in wrapper  # no kernel of Inductor's own: nothing is copied
