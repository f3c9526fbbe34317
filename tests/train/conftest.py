"""Shared helpers for the training tests: a few synthetic paired samples in memory, and a fast trainer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reference.config import LoraConfig
from reference.data.synth import make_sample
from reference.train.batch import Example
from reference.train.config import TINY, TrainConfig
from reference.train.data import to_example
from reference.train.trainer import Trainer

SIZE = 32  # image pixels: 4x4 latents, enough for the tiny UNet's two levels


def toy_examples(count: int, size: int = SIZE, seed: int = 0, max_n: int = 3) -> list[Example]:
    """Synthetic paired samples (reference.data.synth): figures with keypoints and part labels over
    procedural backgrounds, the clean background as ground truth."""
    return [
        to_example(make_sample(seed * 100_003 + i, size=size, n_figures=(1, max_n))) for i in range(count)
    ]


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_folder(root: Path, stems=("a", "b", "c", "d"), size: int = 32, instances: int = 2) -> Path:
    """The dataset layout of DESIGN.md section 2, written by hand (not by the generator)."""
    rng = np.random.default_rng(0)
    for stem in stems:
        write_png(root / "images" / f"{stem}.png", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        write_png(root / "backgrounds" / f"{stem}.png", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        for k in range(1, instances + 1):
            mask = np.zeros((size, size), dtype=np.uint8)
            mask[4 * k : 4 * k + 10, 6:20] = 255
            write_png(root / "masks" / f"{stem}_{k}.png", mask)
    return root


def fast_config(**changes) -> TrainConfig:
    """The tiny preset with stage boundaries a few steps apart and nothing saved unless asked."""
    base = TINY.replace(
        batch_size=2, t0=2, ramp=2, max_steps=6, checkpoint_every=0, lora=LoraConfig(rank=4, alpha=4.0)
    )
    return base.replace(**changes)


def make_trainer(run_dir: Path, config: TrainConfig | None = None, data=None) -> Trainer:
    data = toy_examples(8) if data is None else data
    return Trainer("tiny", config or fast_config(), data, run_dir, progress=False)


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """accelerate keeps process-wide singletons; each test's trainer needs its own settings."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield


@pytest.fixture
def examples() -> list[Example]:
    return toy_examples(8)
