"""The trainer hands the dataset (index, epoch) pairs: random subsets and crops change every epoch,
reproducibly, and a resumed run asks for the same draws."""

from __future__ import annotations

import numpy as np

from mild_export.cli import synth as synth_cli
from reference.train.config import TrainConfig
from reference.train.data import EpochDraws, open_dataset
from reference.train.state import DataOrder


def test_order_names_the_epoch_of_every_index():
    order = DataOrder(size=6, batch_size=2, seed=0)
    batches = iter(order)
    seen = [next(batches) for _ in range(7)]
    assert [{e for _, e in b} for b in seen] == [{0}] * 3 + [{1}] * 3 + [{2}]
    assert sorted(i for b in seen[:3] for i, _ in b) == list(range(6))  # one epoch = every sample once
    resumed = DataOrder(size=6, batch_size=2, seed=0, consumed=4)
    assert next(iter(resumed)) == seen[4]


def test_dataset_draws_move_with_the_epoch(tmp_path):
    root = tmp_path / "data"
    argv = ["--count", "2", "--out", str(root), "--seed", "5", "--figures", "4-4", "--no-progress"]
    assert synth_cli.main(argv) == 0
    data = EpochDraws(
        open_dataset(root, TrainConfig.from_name("tiny").replace(max_instances=2, seed=1), size=48)
    )
    masks = {epoch: data[(0, epoch)].masks.numpy() for epoch in range(6)}
    assert np.array_equal(data[(0, 3)].masks.numpy(), masks[3])  # same (index, epoch), same draw
    assert len({m.tobytes() for m in masks.values()}) > 1  # later epochs draw other subsets and crops
