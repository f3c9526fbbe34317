"""What makes a resumed run continue exactly: the data order and every random number generator.

The data order is a pure function of (seed, batch number): epoch e visits the samples in the
order of `randperm(n)` seeded with seed + e, cut into global batches (the last partial one dropped),
each process taking its slice. So the order needs no state beyond the count of batches consumed,
and worker prefetching cannot make a checkpoint disagree with what was trained on.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class DataOrder:
    size: int  # samples in the dataset
    batch_size: int  # per process
    seed: int
    num_processes: int = 1
    process_index: int = 0
    consumed: int = 0  # batches handed out so far (the same count on every process)

    def __post_init__(self) -> None:
        if self.batches_per_epoch == 0:
            samples = f"{self.size} sample{'' if self.size == 1 else 's'}"
            processes = f"{self.num_processes} process{'' if self.num_processes == 1 else 'es'}"
            raise ValueError(
                f"the dataset has {samples}, fewer than one global batch ({self.batch_size} per process "
                f"x {processes}): add samples or lower the batch size (mild-train --batch-size)"
            )

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.num_processes

    @property
    def batches_per_epoch(self) -> int:
        return self.size // self.global_batch

    def indices(self, batch: int) -> list[int]:
        """This process's sample indices for global batch number `batch`."""
        epoch, within = divmod(batch, self.batches_per_epoch)
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + epoch))
        start = within * self.global_batch + self.process_index * self.batch_size
        return order[start : start + self.batch_size].tolist()

    def epoch(self, batch: int) -> int:
        return batch // self.batches_per_epoch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        """Batches of (index, epoch) from `consumed` on (a DataLoader batch_sampler); advancing is the
        trainer's job."""
        batch = self.consumed
        while True:
            yield [(index, self.epoch(batch)) for index in self.indices(batch)]
            batch += 1


def capture_rng() -> dict[str, Any]:
    """The global RNGs (torch, CUDA, numpy, python): whatever a dataset or module draws from them."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "python": random.getstate(),
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    random.setstate(state["python"])
