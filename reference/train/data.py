"""The dataset folder (DESIGN.md section 2) as a source of training `Example`s.

The folder format, its validation (missing masks or backgrounds, sizes) and the random instance
subsets belong to `reference.data.dataset`; this adapter turns its samples into the tensors the
trainer's batch builder takes, whatever array layout the loader hands out, and checks what only
training asks of the images (sides divisible by 8, one size per batch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from reference.conditions import LATENT_FACTOR
from reference.data.dataset import Entry, MildDataset
from reference.train.batch import Example
from reference.train.config import TrainConfig

FIELDS = ("image", "background", "masks", "keypoints", "parsing", "prompt")


def _field(sample: Any, name: str) -> Any:
    if isinstance(sample, Mapping):
        return sample.get(name)
    return getattr(sample, name, None)


def _image(value: Any) -> Tensor:
    """[H, W, 3] uint8 / [3, H, W] float in [0, 1] -> [3, H, W] float in [0, 1]. Arrays are copied:
    a dataset may hand out read-only views (memory-mapped or cached), which torch cannot share."""
    t = torch.from_numpy(np.array(value)) if not isinstance(value, Tensor) else value
    if t.ndim == 3 and t.shape[-1] == 3 and t.shape[0] != 3:
        t = t.permute(2, 0, 1)
    return t.float() / 255 if t.dtype == torch.uint8 else t.float()


def _optional(value: Any, dtype: torch.dtype) -> Tensor | None:
    if value is None:
        return None
    return (torch.from_numpy(np.array(value)) if not isinstance(value, Tensor) else value).to(dtype)


def to_example(sample: Any) -> Example:
    image, background = _field(sample, "image"), _field(sample, "background")
    if background is None:
        raise ValueError("training needs the clean background of every sample (backgrounds/ in the dataset)")
    masks = torch.as_tensor(np.asarray(_field(sample, "masks"))).float()
    return Example(
        image=_image(image),
        background=_image(background),
        masks=(masks > (127 if masks.max() > 1 else 0.5)).float(),
        keypoints=_optional(_field(sample, "keypoints"), torch.float32),
        parsing=_optional(_field(sample, "parsing"), torch.int64),
        prompt=_field(sample, "prompt") or "",
    )


class ExampleDataset:
    """Index -> Example over any loader whose samples carry the FIELDS (as keys or attributes)."""

    def __init__(self, inner: Any):
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> Example:
        return to_example(self.inner[index])

    def at_epoch(self, index: int, epoch: int) -> Example:
        at = getattr(self.inner, "at_epoch", None)
        return to_example(at(index, epoch) if at else self.inner[index])


class EpochDraws:
    """The trainer's view of a dataset: items are (index, epoch) pairs from `DataOrder`, so a loader
    with random instance subsets and crops (`at_epoch`) draws anew every epoch, reproducibly."""

    def __init__(self, data: Any):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, epoch = item
        at = getattr(self.data, "at_epoch", None)
        return at(index, epoch) if at else self.data[index]


def open_dataset(folder: Path, config: TrainConfig, size: int | None = None) -> ExampleDataset:
    """The training set at `folder`: validated by the loader, backgrounds required."""
    dataset = MildDataset(
        Path(folder), train=True, size=size, max_instances=config.max_instances, seed=config.seed
    )
    if len(dataset) == 0:
        raise ValueError(f"{folder} holds no training samples (images/ is empty)")
    if size is None:
        check_sizes(dataset.entries, config.batch_size)
    return ExampleDataset(dataset)


def check_sizes(entries: Sequence[Entry], batch_size: int) -> None:
    """Images taken at their own size must suit the VAE, and share one size when batched. Checked
    for the whole folder when training starts: the batch builder would otherwise fail at the step
    that first draws a bad sample, hours in, without naming its file."""
    first = entries[0]
    for entry in entries:
        (h, w), (h0, w0) = entry.size, first.size
        if h % LATENT_FACTOR or w % LATENT_FACTOR:
            raise ValueError(
                f"image {entry.image} is {w}x{h}: training needs sides divisible by {LATENT_FACTOR} (the "
                "VAE's factor); crop or resize it, with its background, masks and parsing map"
            )
        if batch_size > 1 and entry.size != first.size:
            raise ValueError(
                f"image {entry.image} is {w}x{h} but {first.image} is {w0}x{h0}: a training batch "
                f"({batch_size} samples) needs one size; resize the images, with their backgrounds, masks "
                "and parsing maps, to one size, or train with --batch-size 1"
            )
