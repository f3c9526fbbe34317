"""Per-sample transforms of `MildDataset`: instance subsets and resize + crop, kept aligned.

Masks and parsing maps are resampled nearest-neighbour (labels stay labels, and both pick the same
source pixels, so parsing stays inside the masks); keypoints are continuous pixel coordinates
(pixel j covers [j, j + 1)) and scale by exactly the image's factor.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def merge_surplus(sample: Any, max_instances: int, rng: np.random.Generator) -> Any:
    """At most `max_instances` masks: a random `max_instances - 1` keep their own mask, the rest
    share one (their union, with the keypoints of its largest member).

    Why merge instead of dropping: a dropped person would still be in the image, outside every
    mask, while the clean background has no one there; the background branch would learn to
    erase people nobody masked. A shared mask keeps that target exact (every foreground branch is
    trained towards the same image, so a layer holding two people is still a correct one).
    """
    n = sample.masks.shape[0]
    if n <= max_instances:
        return sample
    order = rng.permutation(n)
    keep, rest = sorted(order[: max_instances - 1].tolist()), order[max_instances - 1 :]
    pixels = sample.masks[rest].reshape(len(rest), -1).sum(axis=1)
    anchor = int(rest[int(np.argmax(pixels))])
    rows = sorted([*keep, anchor])
    masks = sample.masks[rows].copy()
    masks[rows.index(anchor)] = sample.masks[rest].any(axis=0)
    keypoints = None if sample.keypoints is None else sample.keypoints[rows]
    return dataclasses.replace(sample, masks=masks, keypoints=keypoints)


def _resize(array: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    """[H, W] or [H, W, 3] uint8 -> `size` (H, W)."""
    if array.shape[:2] == size:
        return array
    method = Image.Resampling.NEAREST if nearest else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(array).resize((size[1], size[0]), method))


def _crop_offset(masks: np.ndarray, size: int, rng: np.random.Generator | None) -> tuple[int, int]:
    """(top, left) of the crop: random in training, central otherwise; if that crop would hold
    no person, centred on a pixel of the largest mask instead."""
    height, width = masks.shape[1:]

    def clamp(top: float, left: float) -> tuple[int, int]:
        return int(np.clip(round(top), 0, height - size)), int(np.clip(round(left), 0, width - size))

    if rng is None:
        top, left = clamp((height - size) / 2, (width - size) / 2)
    else:
        top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
    if masks[:, top : top + size, left : left + size].any():
        return top, left
    largest = masks[int(np.argmax(masks.reshape(len(masks), -1).sum(axis=1)))]
    ys, xs = np.nonzero(largest)
    pick = len(ys) // 2 if rng is None else int(rng.integers(len(ys)))
    return clamp(ys[pick] - size / 2, xs[pick] - size / 2)


def resize_crop(sample: Any, size: int, rng: np.random.Generator | None, source: Path) -> Any:
    """Scale the shorter side to `size`, then crop `size` x `size` (random with `rng`, central
    without). People whose masks vanish are dropped with their keypoints; keypoints outside the
    crop get confidence 0 and zero coordinates, as in the folder format."""
    height, width = sample.image.shape[:2]
    scale = size / min(height, width)
    new = (max(size, round(height * scale)), max(size, round(width * scale)))
    masks = np.stack([_resize(m.astype(np.uint8) * 255, new, nearest=True) > 127 for m in sample.masks])
    alive = masks.reshape(len(masks), -1).any(axis=1)
    if not alive.any():
        raise ValueError(
            f"every mask of {source} vanishes when the image is resized to {size} pixels: "
            "use a larger size, or larger masks"
        )
    masks = masks[alive]
    top, left = _crop_offset(masks, size, rng)
    window = (slice(top, top + size), slice(left, left + size))
    masks = masks[:, window[0], window[1]]
    keep = masks.reshape(len(masks), -1).any(axis=1)

    keypoints = None
    if sample.keypoints is not None:
        keypoints = sample.keypoints[alive].copy()
        keypoints[..., 0] = keypoints[..., 0] * (new[1] / width) - left
        keypoints[..., 1] = keypoints[..., 1] * (new[0] / height) - top
        x, y = keypoints[..., 0], keypoints[..., 1]
        inside = (keypoints[..., 2] > 0) & (x >= 0) & (x < size) & (y >= 0) & (y < size)
        keypoints[~inside] = 0.0
        keypoints = keypoints[keep].astype(np.float32)

    def image(array: np.ndarray | None, nearest: bool = False) -> np.ndarray | None:
        return None if array is None else _resize(array, new, nearest)[window]

    return dataclasses.replace(
        sample,
        image=image(sample.image),
        background=image(sample.background),
        masks=masks[keep],
        keypoints=keypoints,
        parsing=image(sample.parsing, nearest=True),
    )
