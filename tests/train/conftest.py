"""Shared helpers for the training tests: a few toy paired samples in memory, and a fast trainer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reference.config import LoraConfig
from reference.train.batch import Example
from reference.train.config import TINY, TrainConfig
from reference.train.trainer import Trainer

SIZE = 32  # image pixels: 4x4 latents, enough for the tiny UNet's two levels


def toy_examples(count: int, size: int = SIZE, seed: int = 0, max_n: int = 3) -> list[Example]:
    """Smooth random backgrounds with 1..max_n coloured boxes composited on top (paired data)."""
    g = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(count):
        coarse = torch.rand(3, 4, 4, generator=g)
        background = torch.nn.functional.interpolate(coarse[None], size=(size, size), mode="bilinear")[0]
        n = int(torch.randint(1, max_n + 1, (1,), generator=g))
        masks = torch.zeros(n, size, size)
        image = background.clone()
        for k in range(n):
            y, x = torch.randint(0, size - size // 3, (2,), generator=g).tolist()
            h, w = torch.randint(size // 6, size // 3, (2,), generator=g).tolist()
            masks[k, y : y + h, x : x + w] = 1
            colour = torch.rand(3, 1, 1, generator=g)
            image = image * (1 - masks[k]) + colour * masks[k]
        keypoints = torch.rand(n, 18, 3, generator=g) * size
        parsing = torch.randint(0, 20, (size, size), generator=g)
        examples.append(Example(image, background, masks, keypoints, parsing, "a person"))
    return examples


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
