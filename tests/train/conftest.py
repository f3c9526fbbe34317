"""Shared helpers for the training tests: a few synthetic paired samples in memory, and a fast trainer."""

from __future__ import annotations

from pathlib import Path

import pytest

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
