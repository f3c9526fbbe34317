"""The Python embedding API as the README shows it: `ErasePipeline(backend).erase(...)` refuses
bad input with a ValueError naming the argument and the fix, before any graph runs, and the
README's snippet runs on the reference backend."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from reference.backend import TorchBackend
from reference.compose import compose
from reference.config import TINY
from reference.pipeline import ErasePipeline
from tests.conftest import make_trained_tiny


def _untouched_backend():
    """A backend that fails the test if any graph runs: the checks must come first."""

    def run(graph, inputs):
        raise AssertionError(f"{graph} ran before the inputs were checked")

    return SimpleNamespace(config=TINY, device=torch.device("cpu"), run=run, tokenize=run)


def _inputs(n: int = 2, size: int = 64):
    image = torch.rand(3, size, size, generator=torch.Generator().manual_seed(n))
    masks = torch.zeros(n, size, size)
    for k in range(n):
        masks[k, 8 * k : 8 * k + 24, 4 + 9 * k : 30 + 9 * k] = 1
    return image, masks


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image": "uint8"}, "in [0, 1], got torch.uint8: divide 8-bit pixels by 255"),
        ({"image": "x255"}, "image must be floating point in [0, 1]"),
        ({"image": "nan"}, "image holds NaN pixels: give values in [0, 1]"),
        ({"masks": "x255"}, "masks must hold only 0 and 1: binarise them"),
        ({"masks": "empty"}, "masks[1] are empty (all zero)"),
        ({"steps": 5000}, "steps must be in 1..1000, got 5000"),
        ({"guidance": math.nan}, "guidance must be >= 0 and finite (1 disables it), got nan"),
        ({"guidance": math.inf}, "guidance must be >= 0 and finite (1 disables it), got inf"),
        ({"keypoints": torch.rand(1, 18, 3)}, "keypoints must be [N, 18, 3] with N = 2 (one row per mask"),
        ({"keypoints": torch.rand(2, 17, 3)}, "got [2, 17, 3]"),
        ({"parsing": torch.zeros(32, 32, dtype=torch.long)}, "parsing must be [H, W] = [64, 64]"),
        ({"parsing": torch.full((64, 64), 25)}, "LIP label ids 0..19, got torch.int64 in 25..25"),
        ({"parsing": torch.rand(64, 64)}, "parsing must hold integer LIP label ids 0..19, got torch.float32"),
    ],
)
def test_bad_input_is_refused_before_any_graph_runs(change, message):
    """Each of these used to run: uint8 or 0..255 images gave a wrong composite, 0/255 masks and
    empty masks ran silently, NaN guidance failed in the text encoder's shape check, keypoints for
    the wrong number of people and parsing maps of another size rendered misaligned maps, and a
    label of 25 failed inside one_hot ("Class values must be smaller than num_classes")."""
    image, masks = _inputs()
    kwargs = {"steps": 2, **{k: v for k, v in change.items() if k not in ("image", "masks")}}
    if change.get("image") == "uint8":
        image = (image * 255).byte()
    elif change.get("image") == "x255":
        image = image * 255
    elif change.get("image") == "nan":
        image[0, 5, 7] = math.nan
    if change.get("masks") == "x255":
        masks = masks * 255
    elif change.get("masks") == "empty":
        masks[1] = 0
    with pytest.raises(ValueError) as err:
        ErasePipeline(_untouched_backend()).erase(image, masks, **kwargs)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image": "numpy"}, "image must be a torch.Tensor, got ndarray: convert it (torch.from_numpy"),
        ({"image": "pil"}, "image must be a torch.Tensor, got Image: convert it (torch.from_numpy for an"),
        ({"masks": "list"}, "masks must be a torch.Tensor, got list: convert it"),
        ({"keypoints": np.zeros((2, 18, 3))}, "keypoints must be a torch.Tensor, got ndarray: convert it"),
        ({"parsing": np.zeros((64, 64), int)}, "parsing must be a torch.Tensor, got ndarray: convert it"),
        (
            {"remove": 1},
            "remove must be a list of 0-based instance indices or None (everyone), got 1: "
            "pass [1] to remove one",
        ),
        ({"steps": 2.5}, "steps must be an integer, got 2.5: give a whole number of DDIM steps"),
        ({"prompt": None}, 'prompt must be a str, got None: give one prompt, or "" for none'),
        (
            {"compose_mode": "copy-outside"},
            "compose mode must be a reference.compose.ComposeMode, got 'copy-outside': pass "
            "ComposeMode.COPY_OUTSIDE or ComposeMode.EQ6",
        ),
    ],
)
def test_wrong_types_are_refused_naming_the_argument(change, message):
    """A numpy array, a PIL image, a list of masks, `remove=1`, `steps=2.5` and `prompt=None` each
    failed with an AttributeError, TypeError or IndexError from inside the pipeline."""
    from PIL import Image

    image, masks = _inputs()
    kwargs = {"steps": 2, **{k: v for k, v in change.items() if k not in ("image", "masks")}}
    image = {"numpy": image.numpy(), "pil": Image.new("RGB", (64, 64))}.get(change.get("image"), image)
    masks = list(masks) if change.get("masks") == "list" else masks
    with pytest.raises(ValueError) as err:
        ErasePipeline(_untouched_backend()).erase(image, masks, **kwargs)
    assert message in str(err.value)


def test_compose_refuses_a_mode_given_as_text():
    """compose(..., "copy-outside", image) ran Eq. 6 over the whole image: a string is no ComposeMode
    member, so neither mode's branch was taken."""
    image, masks = _inputs()
    layers = {0: torch.rand(3, 64, 64), 1: torch.rand(3, 64, 64)}
    with pytest.raises(ValueError) as err:
        compose(torch.rand(3, 64, 64), layers, masks, [0], "copy-outside", image)
    assert "got 'copy-outside': pass ComposeMode.COPY_OUTSIDE or ComposeMode.EQ6" in str(err.value)


def test_readme_snippet_on_the_reference_backend():
    """README, "Python API": the same call every backend takes, here on the tiny reference model."""
    pipeline = ErasePipeline(TorchBackend(make_trained_tiny(), "cpu"))
    image, masks = _inputs()
    keypoints = torch.cat([torch.rand(2, 18, 2) * 64, torch.ones(2, 18, 1)], -1)
    parsing = torch.randint(0, 20, (64, 64))
    result = pipeline.erase(image, masks, remove=[0], keypoints=keypoints, parsing=parsing, steps=2, seed=0)
    assert result.composite.shape == (3, 64, 64) and result.composite.dtype == torch.float32
    assert result.composite.min() >= 0 and result.composite.max() <= 1
    # copy-outside decodes only the kept layer whose mask meets the removed one: mask 1 overlaps mask 0
    assert result.remove == [0] and sorted(result.layers) == [1]
    outside = masks[0] == 0  # copy-outside: pixels outside the removed mask are the input's
    torch.testing.assert_close(result.composite[:, outside], image[:, outside])
