"""The layered UNet: starts as the plain diffusers UNet, keeps branches apart, batches exactly."""

import copy

import pytest
import torch
import torch.nn.functional as F

from reference.branch_attention import processors
from reference.config import ModelConfig
from reference.layered_unet import LayeredUNet, token_mask_pyramid
from reference.model import build_base, build_model

TINY = ModelConfig.from_name("tiny")


def unet_inputs(n_fg=3, h=8, w=8, seed=0, config=TINY):
    g = torch.Generator().manual_seed(seed)
    n = n_fg + 1
    return {
        "sample_fg": torch.randn(n_fg, 9, h, w, generator=g),
        "sample_bg": torch.randn(1, 9, h, w, generator=g),
        "mask_fg": (torch.rand(n_fg, 1, h, w, generator=g) > 0.5).float(),
        "mask_bg": (torch.rand(1, 1, h, w, generator=g) > 0.5).float(),
        "context_fg": torch.randn(n_fg, config.context_length, config.cross_attention_dim, generator=g),
        "context_bg": torch.randn(1, config.context_length, config.cross_attention_dim, generator=g),
        "timestep": torch.full((n,), 421.0),
    }


def randomize(params, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


@torch.no_grad()
def test_untrained_layered_unet_reproduces_the_plain_unet():
    _, _, plain = build_base(TINY)
    layered = LayeredUNet(copy.deepcopy(plain), TINY).eval()
    x = unet_inputs(h=8, w=16)
    eps_fg, eps_bg = layered(**x)
    expected = plain(
        torch.cat([x["sample_fg"], x["sample_bg"]]),
        x["timestep"],
        encoder_hidden_states=torch.cat([x["context_fg"], x["context_bg"]]),
    ).sample
    torch.testing.assert_close(torch.cat([eps_fg, eps_bg]), expected, rtol=1e-5, atol=1e-6)
    assert expected.abs().mean() > 0.1  # the comparison is not between zeros


@torch.no_grad()
@pytest.mark.parametrize("branch", ["fg", "bg"])
def test_changing_one_lora_set_changes_only_its_rows(branch):
    unet = build_model(TINY).unet
    x = unet_inputs()
    before = unet(**x)
    randomize([p for name, p in unet.named_parameters() if f"lora_B.{branch}" in name], seed=1)
    after = unet(**x)
    changed, same = (0, 1) if branch == "fg" else (1, 0)
    torch.testing.assert_close(after[same], before[same], rtol=0, atol=1e-6)
    assert (after[changed] - before[changed]).abs().max() > 1e-2


@torch.no_grad()
def test_sma_alpha_offsets_and_scales_take_effect():
    unet = build_model(TINY).unet
    x = unet_inputs()
    base = torch.cat(unet(**x))
    procs = processors(unet.unet)
    self_attn = [p for p in procs.values() if p.sma_alpha is not None]
    assert len(self_attn) == 7 and len(procs) == 14  # tiny: 2 down + 1 mid + 2x2 up transformer blocks
    randomize([p.sma_alpha for p in self_attn], seed=2)
    with_sma = torch.cat(unet(**x))
    assert (with_sma - base).abs().max() > 1e-3
    randomize(unet.offsets.net[-1].parameters(), seed=3)
    assert (torch.cat(unet(**x)) - with_sma).abs().max() > 1e-3


@torch.no_grad()
def test_batching_all_branches_equals_running_each_alone():
    unet = build_model(TINY).unet
    for name, p in unet.named_parameters():  # trained-looking weights, so the branches differ
        if "lora_B" in name or "sma_alpha" in name:
            randomize([p], seed=hash(name) % 1000)
    x = unet_inputs(n_fg=3, h=16, w=8)
    eps_fg, eps_bg = unet(**x)
    for k in range(3):
        alone = {
            **x,
            "sample_fg": x["sample_fg"][k : k + 1],
            "mask_fg": x["mask_fg"][k : k + 1],
            "context_fg": x["context_fg"][k : k + 1],
            "timestep": x["timestep"][:2],
        }
        fg_k, bg = unet(**alone)
        torch.testing.assert_close(fg_k, eps_fg[k : k + 1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(bg, eps_bg, rtol=1e-5, atol=1e-5)


def test_token_mask_pyramid_marks_touching_tokens_and_matches_odd_grids():
    mask = torch.zeros(1, 1, 5, 7)
    mask[0, 0, 4, 6] = 1
    levels = token_mask_pyramid(mask, 3)
    assert [lv.shape[1] for lv in levels] == [35, 3 * 4, 2 * 2]
    assert levels[1].view(3, 4)[2, 3] == 1 and levels[1].sum() == 1
    assert levels[2].view(2, 2)[1, 1] == 1 and levels[2].sum() == 1


@pytest.mark.parametrize("size", [(64, 64), (5, 7), (9, 2), (1, 3)])
def test_token_mask_pyramid_equals_pooling_by_two_level_by_level(size):
    """Each level is one pool by 2^i (torch.compile reuses it; a chain it recomputes per reader):
    the same tokens as the UNet's stride-2 halvings, soft values included."""
    mask = torch.rand(2, 1, *size, generator=torch.Generator().manual_seed(0))
    chained = mask
    for i, level in enumerate(token_mask_pyramid(mask, 4)):
        if i:
            chained = F.max_pool2d(chained, kernel_size=2, stride=2, ceil_mode=True)
        assert torch.equal(level, chained.flatten(1))


def test_rejects_a_unet_without_inpainting_channels():
    config = TINY.replace(unet={**TINY.unet, "in_channels": 4})
    _, _, unet = build_base(config)
    with pytest.raises(ValueError, match="9 input channels, this one has 4"):
        LayeredUNet(unet, config)
