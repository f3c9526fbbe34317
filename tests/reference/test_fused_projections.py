"""Fused projections: a merged attention's Q/K/V (or K/V) as one GEMM per branch, same numbers,
no weight stored twice; models that are not merged are left alone."""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention

from reference.branch_attention import FUSED, fuse_projections
from reference.merge import merge_model
from tests.conftest import make_trained_tiny
from tests.reference.test_layered_unet import unet_inputs


def run_unet(model, inputs):
    with torch.no_grad():
        return torch.cat(model.unet(**inputs))


def stored_bytes(module: torch.nn.Module) -> int:
    storages = {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() for p in module.parameters()}
    return sum(storages.values())


def test_every_merged_attention_is_fused_and_computes_the_same():
    merged = merge_model(make_trained_tiny(seed=3))
    inputs = unet_inputs(n_fg=3, seed=4)
    want = run_unet(merged, inputs)
    before = stored_bytes(merged.unet)
    attentions = [m for m in merged.unet.modules() if isinstance(m, Attention)]
    assert fuse_projections(merged.unet) == len(attentions) > 0
    for attn in attentions:
        assert len(getattr(attn, FUSED).sizes) == (2 if attn.is_cross_attention else 3)
        assert attn.to_k.weight_fg.untyped_storage().data_ptr() == (
            getattr(attn, FUSED).weight_fg.untyped_storage().data_ptr()
        )  # the originals are views into the fused weights
    assert stored_bytes(merged.unet) == before
    got = run_unet(merged, inputs)
    # the same dot products, the GEMMs only wider: float32 rounding at most
    assert (got - want).abs().max() <= 1e-6 * want.abs().max()


def test_a_model_that_is_not_merged_is_left_alone():
    trained = make_trained_tiny(seed=3)  # peft LoRA layers: nothing to fuse
    assert fuse_projections(trained.unet) == 0
    assert not any(hasattr(m, FUSED) for m in trained.unet.modules())
