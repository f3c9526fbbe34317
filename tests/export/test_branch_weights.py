"""The bg Q/K/V set as a low-rank difference: exact where the difference is low-rank, refused where
not, and a swap that leaves the caller's model as it was."""

import pytest
import torch

from mild_export.export.branch_weights import BranchWeights, branch_weights_form, low_rank_difference
from mild_export.export.modules import graph_modules
from reference.branch_attention import BranchLinear, LowRankBranchLinear
from tests.conftest import make_trained_tiny, unet_inputs


def folded_pair(out_dim: int, in_dim: int, r: int, dtype: torch.dtype, seed: int):
    """W_fg, W_bg as mild-merge makes them: one base plus two scaled rank-r products, rounded."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(out_dim, in_dim, generator=g, dtype=torch.float64)
    sets = [
        base
        + 0.3
        * torch.randn(out_dim, r, generator=g, dtype=torch.float64)
        @ torch.randn(r, in_dim, generator=g, dtype=torch.float64)
        / r
        for _ in range(2)
    ]
    return sets[0].to(dtype), sets[1].to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("out_dim", "in_dim"), [(40, 72), (96, 33)])
def test_folded_sets_differ_by_their_rank(dtype, out_dim, in_dim):
    w_fg, w_bg = folded_pair(out_dim, in_dim, r=4, dtype=dtype, seed=out_dim)
    up, down = low_rank_difference(w_fg, w_bg, rank=8)
    assert up.shape == (out_dim, 8) and down.shape == (8, in_dim) and up.dtype == down.dtype == dtype
    rebuilt = w_fg.double() + up.double() @ down.double()
    error = float((rebuilt - w_bg.double()).norm() / w_bg.double().norm())
    # the sets' own rounding (and the factors' rounding in their dtype) is all that may remain
    assert error < 4 * torch.finfo(dtype).eps, error


def test_a_difference_of_full_rank_is_refused():
    g = torch.Generator().manual_seed(0)
    w_fg, w_bg = torch.randn(48, 64, generator=g), torch.randn(48, 64, generator=g)
    assert low_rank_difference(w_fg, w_bg, rank=8) is None


def test_identical_sets_give_zero_factors_of_the_full_rank():
    w = torch.randn(24, 16)
    up, down = low_rank_difference(w, w.clone(), rank=8)
    assert up.shape == (24, 8) and down.shape == (8, 16)
    assert not up.any() and not down.any()


def test_swap_matches_the_lora_model_and_is_undone():
    lora = make_trained_tiny(seed=2)
    unet = graph_modules(lora)["unet"]  # merged (BranchLinear)
    before = [m for m in unet.modules() if isinstance(m, BranchLinear)]
    x = unet_inputs(lora, 3, 8, seed=4, timestep=500.0)
    with torch.no_grad():
        reference = lora.unet(**x)
        with branch_weights_form(unet, BranchWeights.LOW_RANK, rank=2 * lora.config.lora.rank) as conversion:
            assert not any(isinstance(m, BranchLinear) for m in unet.modules())
            factored = unet(**x)
    assert conversion.factored == len(before) and conversion.whole == 0
    for ours, theirs in zip(factored, reference, strict=True):
        assert float((ours - theirs).norm() / theirs.norm()) < 1e-5
    assert [m for m in unet.modules() if isinstance(m, BranchLinear)] == before  # the same objects
    assert not any(isinstance(m, LowRankBranchLinear) for m in unet.modules())


def test_full_form_changes_nothing():
    unet = graph_modules(make_trained_tiny(seed=2))["unet"]
    before = list(unet.modules())
    with branch_weights_form(unet, BranchWeights.FULL, rank=8) as conversion:
        assert list(unet.modules()) == before
    assert conversion.factored == 0 and conversion.whole == sum(isinstance(m, BranchLinear) for m in before)
