"""Eq. 6 exactly, for every removal set of N = 3 instances, in both composition modes."""

import itertools
from collections.abc import Mapping

import pytest
import torch

from reference.compose import ComposeMode, compose, cutout_rgba, layers_needed

H, W = 12, 13
SUBSETS = [list(r) for n in range(4) for r in itertools.combinations(range(3), n)]

# Kept layers whose mask touches the union of the removed masks, for the masks of `scene_masks`
# (0 and 1 overlap, 2 stands apart), written out by hand.
COPY_OUTSIDE_NEEDS = {
    (): [],
    (0,): [1],
    (1,): [0],
    (2,): [],
    (0, 1): [],
    (0, 2): [1],
    (1, 2): [0],
    (0, 1, 2): [],
}


def scene_masks() -> torch.Tensor:
    masks = torch.zeros(3, H, W)
    masks[0, 1:6, 1:6] = 1
    masks[1, 4:10, 4:11] = 1  # overlaps instance 0 at [4:6, 4:6]
    masks[2, 9:12, 0:3] = 1  # apart from the others (touches 1 only diagonally: no shared pixel)
    return masks


def random_scene(seed: int, batch: tuple[int, ...] = ()):
    g = torch.Generator().manual_seed(seed)
    masks = scene_masks().expand(*batch, 3, H, W).clone()
    layers = {k: torch.rand(*batch, 3, H, W, generator=g) for k in range(3)}
    return masks, layers, torch.rand(*batch, 3, H, W, generator=g), torch.rand(*batch, 3, H, W, generator=g)


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


def removed_union(masks, remove):
    return masks[remove].amax(0) > 0 if remove else torch.zeros(H, W, dtype=torch.bool)


class OnlyThese(Mapping):
    """All layers are there, but reading one outside `allowed` fails the test."""

    def __init__(self, layers, allowed):
        self.layers, self.allowed, self.read = layers, set(allowed), []

    def __getitem__(self, k):
        assert k in self.allowed, f"compose read layer {k}, which the composite does not need"
        self.read.append(k)
        return self.layers[k]

    def __contains__(self, k):
        return k in self.layers

    def __iter__(self):
        return iter(self.layers)

    def __len__(self):
        return len(self.layers)


@pytest.mark.parametrize("remove", SUBSETS)
def test_eq6_mode_is_the_formula(remove):
    masks, layers, background, _ = random_scene(seed=len(SUBSETS) + SUBSETS.index(remove))
    kept = [k for k in range(3) if k not in remove]
    assert layers_needed(masks, remove, ComposeMode.EQ6) == kept
    guarded = OnlyThese(layers, kept)
    out = compose(background, guarded, masks, remove, ComposeMode.EQ6)
    assert sorted(guarded.read) == kept
    torch.testing.assert_close(out, eq6(masks, layers, background, remove), rtol=0, atol=1e-6)


@pytest.mark.parametrize("remove", SUBSETS)
def test_eq6_on_constant_colours_region_by_region(remove):
    """Distinct colours per layer: each region's colour follows from Eq. 6 by hand."""
    masks = scene_masks()
    colours = [torch.tensor(c) for c in ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))]
    bg = torch.tensor((0.25, 0.5, 0.125))
    layers = {k: c[:, None, None].expand(3, H, W) for k, c in enumerate(colours)}
    out = compose(bg[:, None, None].expand(3, H, W), layers, masks, remove, ComposeMode.EQ6)
    # (pixel, instances covering it): only 0, 0 and 1, only 1, only 2, none.
    regions = [((2, 2), {0}), ((4, 4), {0, 1}), ((8, 8), {1}), ((10, 1), {2}), ((0, 12), set())]
    for (i, j), covering in regions:
        shown = covering - set(remove)
        expected = sum((colours[k] for k in shown), torch.zeros(3)) + (1 - len(shown)) * bg
        assert torch.equal(out[:, i, j], expected), (remove, (i, j))


def test_overlap_of_two_kept_layers_is_eq6_literally():
    """Eq. 6 adds overlapping kept layers and subtracts the background once more; no renormalising."""
    masks = scene_masks()
    layers = {k: torch.full((3, H, W), v) for k, v in enumerate((0.5, 0.75, 0.0))}
    out = compose(torch.full((3, H, W), 0.5), layers, masks, [2], ComposeMode.EQ6)
    assert torch.equal(out[:, 4, 4], torch.full((3,), 0.5 + 0.75 - 0.5))


@pytest.mark.parametrize("remove", SUBSETS)
def test_copy_outside_is_the_formula_inside_the_removed_masks(remove):
    masks, layers, background, image = random_scene(seed=SUBSETS.index(remove))
    needed = layers_needed(masks, remove, ComposeMode.COPY_OUTSIDE)
    assert needed == COPY_OUTSIDE_NEEDS[tuple(remove)]
    guarded = OnlyThese(layers, needed)
    out = compose(background, guarded, masks, remove, ComposeMode.COPY_OUTSIDE, image)
    assert sorted(guarded.read) == needed
    expected = torch.where(removed_union(masks, remove), eq6(masks, layers, background, remove), image)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", list(ComposeMode))
def test_only_the_needed_layers_have_to_be_given(mode):
    masks, layers, background, image = random_scene(seed=1)
    for remove in SUBSETS:
        given = {k: layers[k] for k in layers_needed(masks, remove, mode)}
        out = compose(background, given, masks, remove, mode, image)
        torch.testing.assert_close(
            out, compose(background, layers, masks, remove, mode, image), rtol=0, atol=0
        )


@pytest.mark.parametrize("mode", list(ComposeMode))
def test_a_batch_is_each_item_composed_alone(mode):
    masks, layers, background, image = random_scene(seed=2, batch=(2,))
    masks[1, 1] = 0
    masks[1, 1, 0:3, 8:12] = 1  # item 1: instance 1 moves away from instance 0
    for remove in SUBSETS:
        alone = [layers_needed(masks[b], remove, mode) for b in range(2)]
        needed = layers_needed(masks, remove, mode)
        assert needed == sorted(set(alone[0]) | set(alone[1]))
        out = compose(background, layers, masks, remove, mode, image)
        for b in range(2):
            item_layers = {k: v[b] for k, v in layers.items()}
            item = compose(background[b], item_layers, masks[b], remove, mode, image[b])
            torch.testing.assert_close(out[b], item, rtol=0, atol=0)
    assert layers_needed(masks[1], [0], ComposeMode.COPY_OUTSIDE) == []


def test_result_is_a_new_tensor_in_the_background_dtype():
    masks, layers, background, image = random_scene(seed=3)
    out = compose(background, {}, masks, [0, 1, 2], ComposeMode.EQ6)
    assert torch.equal(out, background) and out.data_ptr() != background.data_ptr()
    double = compose(background.double(), layers, masks, [1], ComposeMode.COPY_OUTSIDE, image)
    assert double.dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", list(ComposeMode))
def test_on_the_gpu_matches_the_cpu(mode):
    masks, layers, background, image = random_scene(seed=4, batch=(2,))
    cuda = {k: v.cuda() for k, v in layers.items()}
    for remove in SUBSETS:
        assert layers_needed(masks.cuda(), remove, mode) == layers_needed(masks, remove, mode)
        out = compose(background.cuda(), cuda, masks.cuda(), remove, mode, image.cuda())
        assert out.is_cuda
        expected = compose(background, layers, masks, remove, mode, image)
        torch.testing.assert_close(out.cpu(), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ([3], r"instance index 3 to remove is out of range: there are 3 instances \(0..2\)"),
        ([-1], r"instance index -1 to remove is out of range: there are 3 instances \(0..2\)"),
        ([1, 0, 1], r"instance index 1 appears twice in the removal set \(N = 3\)"),
        ([1.0], r"instance index 1.0 to remove is not an integer: give 0-based indices 0..2"),
        ([True], r"instance index True to remove is not an integer"),
    ],
)
@pytest.mark.parametrize("mode", list(ComposeMode))
def test_bad_removal_sets_name_the_value_and_n(remove, message, mode):
    masks, layers, background, image = random_scene(seed=5)
    with pytest.raises(ValueError, match=message):
        layers_needed(masks, remove, mode)
    with pytest.raises(ValueError, match=message):
        compose(background, layers, masks, remove, mode, image)


def test_missing_inputs_and_shapes_are_named():
    masks, layers, background, image = random_scene(seed=6)
    with pytest.raises(ValueError, match=r"layer 1 is needed by the composite but was not decoded.*\[1\]"):
        compose(background, {}, masks, [0], ComposeMode.COPY_OUTSIDE, image)
    with pytest.raises(ValueError, match="layer 2 is needed by the composite"):
        compose(background, {0: layers[0]}, masks, [1], ComposeMode.EQ6)
    with pytest.raises(ValueError, match="copy-outside composition needs the input image: pass image="):
        compose(background, layers, masks, [0])
    with pytest.raises(ValueError, match=r"background has shape \(3, 8, 8\) but masks \(3, 12, 13\)"):
        compose(background[:, :8, :8], layers, masks, [0], ComposeMode.EQ6)
    with pytest.raises(ValueError, match=r"input image has shape \(3, 12, 12\)"):
        compose(background, layers, masks, [0], ComposeMode.COPY_OUTSIDE, image[:, :, :12])
    with pytest.raises(ValueError, match=r"layer 1 has shape \(1, 12, 13\)"):
        compose(background, {1: layers[1][:1]}, masks, [0], ComposeMode.COPY_OUTSIDE, image)


def test_cutout_rgba_uses_the_mask_as_alpha():
    masks, layers, *_ = random_scene(seed=7)
    rgba = cutout_rgba(layers[1], masks[1])
    assert rgba.shape == (4, H, W)
    assert torch.equal(rgba[3], masks[1]) and torch.equal(rgba[:3], layers[1])
    batched = cutout_rgba(torch.stack([layers[0], layers[1]]), masks[:2])
    assert torch.equal(batched[1], rgba)
    with pytest.raises(ValueError, match=r"cutout_rgba needs layer \[..., 3, H, W\] and mask \[..., H, W\]"):
        cutout_rgba(layers[1], masks)
