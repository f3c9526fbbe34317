"""The synthetic generator's ground truth is exact: visible masks, clean background, pose, parsing."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reference.data.skeleton import KEYPOINTS, LIMBS, Lip
from reference.data.synth import SynthSample, make_sample

SEEDS = list(range(0, 40, 3))  # fresh scenes, several figure counts and sizes below


def digest(sample: SynthSample) -> str:
    h = hashlib.sha256()
    for array in (sample.image, sample.background, sample.masks, sample.keypoints, sample.parsing):
        h.update(np.ascontiguousarray(array).tobytes())
    h.update(sample.prompt.encode())
    return h.hexdigest()


def test_skeleton_tables():
    assert len(KEYPOINTS) == 18 and KEYPOINTS[:2] == ("nose", "neck") and KEYPOINTS[-1] == "l_ear"
    assert len(LIMBS) == 17 and all(0 <= a < 18 and 0 <= b < 18 for a, b in LIMBS)
    assert [int(v) for v in Lip] == list(range(20)) and Lip.FACE == 13 and Lip.RIGHT_SHOE == 19


def test_same_seed_same_bytes_different_seed_different():
    assert digest(make_sample(5)) == digest(make_sample(5))
    assert digest(make_sample(5)) != digest(make_sample(6))
    assert digest(make_sample(5, size=64)) != digest(make_sample(5, size=48))


def test_reproducible_in_a_fresh_interpreter():
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_synth import digest\n"
        "from reference.data.synth import make_sample\n"
        "print(digest(make_sample(11, size=40, n_figures=3)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == digest(make_sample(11, size=40, n_figures=3))


@pytest.mark.parametrize("size,figures", [(64, (1, 3)), (40, 5), (72, 1)])
def test_shapes_and_dtypes(size, figures):
    for seed in SEEDS[:5]:
        s = make_sample(seed, size=size, n_figures=figures)
        n = s.masks.shape[0]
        assert s.image.shape == s.background.shape == (size, size, 3)
        assert s.image.dtype == s.background.dtype == np.uint8
        assert s.masks.shape == s.amodal.shape == (n, size, size) and s.masks.dtype == bool
        assert s.keypoints.shape == (n, 18, 3) and s.keypoints.dtype == np.float32
        assert s.parsing.shape == (size, size) and s.parsing.dtype == np.uint8
        assert isinstance(s.prompt, str) and s.prompt
        low, high = (figures, figures) if isinstance(figures, int) else figures
        assert 1 <= n <= high and (n >= low or size < 48)  # a figure is only dropped when it cannot fit


def test_fixed_figure_count_is_kept():
    assert [make_sample(seed, n_figures=3).masks.shape[0] for seed in SEEDS] == [3] * len(SEEDS)


@pytest.mark.parametrize("seed", SEEDS)
def test_masks_are_the_visible_parts(seed):
    s = make_sample(seed, n_figures=(2, 4))
    assert s.masks.reshape(len(s.masks), -1).sum(axis=1).min() >= 12  # every mask non-empty
    assert not (s.masks & ~s.amodal).any()  # visible parts of the figure itself
    for k in range(len(s.masks)):
        later = s.amodal[k + 1 :].any(axis=0)
        assert not (s.masks[k] & later).any()  # nothing nearer covers a mask pixel
        # a hidden part of figure k is under a nearer figure or under an object in front,
        # which belongs to the clean background
        hidden = s.amodal[k] & ~s.masks[k] & ~later
        assert np.array_equal(s.image[hidden], s.background[hidden])
    assert s.masks.sum(axis=0).max() <= 1  # visible parts never overlap


@pytest.mark.parametrize("seed", SEEDS)
def test_image_is_background_outside_the_masks(seed):
    s = make_sample(seed)
    outside = ~s.masks.any(axis=0)
    assert np.array_equal(s.image[outside], s.background[outside])
    assert not np.array_equal(s.image, s.background)


@pytest.mark.parametrize("seed", SEEDS)
def test_keypoints_inside_where_confident(seed):
    s = make_sample(seed, size=48, n_figures=(1, 4))
    x, y, c = s.keypoints[..., 0], s.keypoints[..., 1], s.keypoints[..., 2]
    assert set(np.unique(c)) <= {0.0, 1.0} and c.sum() > 0
    confident = c > 0
    assert ((x[confident] >= 0) & (x[confident] < 48) & (y[confident] >= 0) & (y[confident] < 48)).all()
    assert (s.keypoints[~confident] == 0).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_parsing_labels_the_visible_figures_only(seed):
    s = make_sample(seed)
    union = s.masks.any(axis=0)
    assert s.parsing.max() < 20
    assert (s.parsing[~union] == 0).all() and (s.parsing[union] > 0).all()


def test_parts_are_labelled():
    seen = set()
    for seed in range(30):
        seen |= set(np.unique(make_sample(seed, size=96).parsing).tolist())
    for part in (Lip.FACE, Lip.HAIR, Lip.UPPER_CLOTHES, Lip.PANTS, Lip.LEFT_ARM, Lip.RIGHT_ARM):
        assert int(part) in seen, part
    assert {int(Lip.LEFT_SHOE), int(Lip.RIGHT_SHOE)} & seen


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="make_sample: need n_figures >= 1 and size >= 16, got 0 and 64"):
        make_sample(0, n_figures=0)
