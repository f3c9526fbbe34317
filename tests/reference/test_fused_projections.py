"""Fused projections: a merged attention's Q/K/V (or K/V) as one module, whole sets or low-rank,
same numbers, no weight stored twice; models that are not merged are left alone."""

from __future__ import annotations

import pytest
import torch
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
        assert attn.to_v.weight_fg.untyped_storage().data_ptr() == (
            groups[-1].weight_fg.untyped_storage().data_ptr()
        )  # the originals are views into the fused weights
        if form is BranchWeights.LOW_RANK:
            assert attn.to_v.up.untyped_storage().data_ptr() == groups[-1].up.untyped_storage().data_ptr()
            zeros += sum(g.up.numel() - sum(s * conversion.rank for s in g.sizes) for g in groups)
    assert stored_bytes(merged.unet) == before + 4 * zeros
    got = run_unet(merged, inputs)
    # the same dot products, the GEMMs only wider: float32 rounding at most
    assert (got - want).abs().max() <= 1e-6 * want.abs().max()


def test_a_model_that_is_not_merged_is_left_alone():
    trained = make_trained_tiny(seed=3)  # peft LoRA layers: nothing to fuse
    assert fuse_projections(trained.unet) == 0
    assert not any(hasattr(m, FUSED) for m in trained.unet.modules())
