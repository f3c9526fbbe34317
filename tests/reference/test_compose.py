"""Eq. 6 exactly, for every removal set of N = 3 instances, in both composition modes."""

import itertools

import pytest
import torch

from reference.compose import ComposeMode, compose, cutout_rgba, layers_needed

H = W = 12


def scene():
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(3, H, W)
    masks[0, 1:6, 1:6] = 1
    masks[1, 4:10, 4:10] = 1  # overlaps instance 0 at [4:6, 4:6]
    masks[2, 8:12, 0:3] = 1  # apart from the others
    layers = {k: torch.rand(3, H, W, generator=g) for k in range(3)}
    return masks, layers, torch.rand(3, H, W, generator=g), torch.rand(3, H, W, generator=g)


def eq6(masks, layers, background, remove):
    """Eq. 6 written pixel by pixel."""
    out = torch.empty(3, H, W)
    kept = [k for k in range(3) if k not in remove]
    for i, j in itertools.product(range(H), range(W)):
        weight = sum(masks[k, i, j] for k in kept)
        out[:, i, j] = (
            sum(masks[k, i, j] * layers[k][:, i, j] for k in kept) + (1 - weight) * background[:, i, j]
        )
    return out


SUBSETS = [list(r) for n in range(4) for r in itertools.combinations(range(3), n)]


@pytest.mark.parametrize("remove", SUBSETS)
def test_eq6_mode_is_the_formula(remove):
    masks, layers, background, _ = scene()
    assert layers_needed(masks, remove, ComposeMode.EQ6) == [k for k in range(3) if k not in remove]
    out = compose(background, layers, masks, remove, ComposeMode.EQ6)
    torch.testing.assert_close(out, eq6(masks, layers, background, remove), rtol=0, atol=1e-6)


@pytest.mark.parametrize("remove", SUBSETS)
def test_copy_outside_mode_is_the_formula_inside_the_removed_masks(remove):
    masks, layers, background, image = scene()
    needed = layers_needed(masks, remove, ComposeMode.COPY_OUTSIDE)
    union = masks[remove].amax(0) > 0 if remove else torch.zeros(H, W, dtype=torch.bool)
    assert needed == [k for k in range(3) if k not in remove and (masks[k].bool() & union).any()]
    given = {k: layers[k] for k in needed}  # the composite must not read any other layer
    out = compose(background, given, masks, remove, ComposeMode.COPY_OUTSIDE, image)
    expected = torch.where(union, eq6(masks, layers, background, remove), image)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_overlap_cases_need_the_right_layers():
    masks, *_ = scene()
    assert layers_needed(masks, [0], ComposeMode.COPY_OUTSIDE) == [1]  # 1 overlaps 0, 2 does not
    assert layers_needed(masks, [2], ComposeMode.COPY_OUTSIDE) == []


def test_errors_name_the_problem():
    masks, layers, background, image = scene()
    with pytest.raises(
        ValueError, match=r"instance index 3 to remove is out of range: there are 3 instances \(0..2\)"
    ):
        layers_needed(masks, [3], ComposeMode.EQ6)
    with pytest.raises(ValueError, match="repeat"):
        layers_needed(masks, [1, 1], ComposeMode.EQ6)
    with pytest.raises(ValueError, match="layer 1 is needed by the composite but was not decoded"):
        compose(background, {}, masks, [0], ComposeMode.COPY_OUTSIDE, image)
    with pytest.raises(ValueError, match="needs the input image"):
        compose(background, layers, masks, [0], ComposeMode.COPY_OUTSIDE)


def test_cutout_rgba_uses_the_mask_as_alpha():
    masks, layers, *_ = scene()
    rgba = cutout_rgba(layers[1], masks[1])
    assert rgba.shape == (4, H, W)
    assert torch.equal(rgba[3], masks[1]) and torch.equal(rgba[:3], layers[1])
