"""Synthetic paired samples with exact ground truth: `make_sample(seed)` -> `SynthSample`.

A scene is a procedural background (gradient, value noise, stripes or checks, or a horizon) with
objects behind the people, 1..N figures standing at different depths (nearer = lower and larger =
painted later), and objects in front of the people. The objects in front belong to the scene, so
the clean background holds them too; that makes `image == background` exactly wherever no figure
is visible, and each mask exactly the visible part of its figure. Figures that end up (almost)
hidden are placed again, and dropped if that keeps failing, so every mask is non-empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reference.data import raster
from reference.data.figures import draw_figure, random_outfit
from reference.data.skeleton import keypoints_in_image, random_pose

# Named colours: scenes are drawn near these so the prompt can name them.
PALETTE = {
    "red": (200, 40, 40),
    "orange": (235, 140, 40),
    "yellow": (235, 215, 60),
    "green": (60, 160, 70),
    "teal": (40, 150, 150),
    "blue": (50, 90, 200),
    "purple": (130, 60, 170),
    "pink": (235, 150, 180),
    "brown": (120, 80, 45),
    "white": (235, 235, 235),
    "gray": (128, 128, 128),
    "black": (30, 30, 30),
    "beige": (215, 200, 160),
}
BACKGROUND_KINDS = ("gradient", "noise", "stripes", "checks", "horizon")
OBJECT_KINDS = ("box", "disc", "pole")


@dataclass(frozen=True)
class SynthConfig:
    """Scene statistics; the defaults suit 64x64 samples. Pixel counts are for 64x64 and scale
    with the image area."""

    figures: tuple[int, int] = (1, 3)
    back_objects: tuple[int, int] = (0, 3)
    front_objects: tuple[int, int] = (0, 2)
    front_object_side: float = 0.3  # largest side of an object in front, as a fraction of the image
    min_visible_pixels: int = 12  # a figure with fewer visible pixels is placed again
    min_visible_fraction: float = 0.15  # ... or with less than this share of itself visible
    placement_tries: int = 25


@dataclass
class SynthSample:
    """One paired sample; arrays in the layouts of the dataset folder (DESIGN.md section 2)."""

    image: np.ndarray  # [H, W, 3] uint8: background with the figures
    background: np.ndarray  # [H, W, 3] uint8: the clean ground truth
    masks: np.ndarray  # [N, H, W] bool: the visible part of each figure, back to front
    keypoints: np.ndarray  # [N, 18, 3] float32: x, y in pixels, confidence 1 / 0 (outside, unseen)
    parsing: np.ndarray  # [H, W] uint8 LIP ids of the visible figure pixels, 0 elsewhere
    prompt: str  # describes the clean background
    amodal: np.ndarray  # [N, H, W] bool: each whole figure, hidden parts included (not written)

    def erase_inputs(self) -> dict[str, Any]:
        """The photo as the pipeline takes it: image [3, H, W] in [0, 1], masks [N, H, W] in {0, 1},
        keypoints [N, 18, 3], parsing [H, W] int64 ids, and the prompt."""
        return {
            "image": torch.from_numpy(self.image).permute(2, 0, 1).float() / 255,
            "masks": torch.from_numpy(self.masks.astype(np.float32)),
            "keypoints": torch.from_numpy(self.keypoints),
            "parsing": torch.from_numpy(self.parsing.astype(np.int64)),
            "prompt": self.prompt,
        }


@dataclass
class _Figure:
    pose: object
    canvas: raster.Canvas
    keypoints: np.ndarray
    foot_y: float


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _palette_color(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    name = str(rng.choice(list(PALETTE)))
    return name, np.clip(np.asarray(PALETTE[name], dtype=np.float64) + rng.normal(0, 10, 3), 0, 255)


def _value_noise(rng: np.random.Generator, size: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a random (cells + 1)^2 grid, bilinearly interpolated."""
    grid = rng.random((cells + 1, cells + 1))
    y = (np.arange(size[0]) + 0.5) / size[0] * cells
    x = (np.arange(size[1]) + 0.5) / size[1] * cells
    y0, x0 = np.minimum(y.astype(int), cells - 1), np.minimum(x.astype(int), cells - 1)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _base(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """[H, W, 3] float background and its description."""
    kind = str(rng.choice(BACKGROUND_KINDS))
    (name_a, a), (name_b, b) = _palette_color(rng), _palette_color(rng)
    ys = (np.arange(size[0])[:, None] + 0.5) / size[0]
    xs = (np.arange(size[1])[None, :] + 0.5) / size[1]
    if kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        t = np.clip((xs - 0.5) * np.cos(angle) + (ys - 0.5) * np.sin(angle) + 0.5, 0, 1)
        text = f"{_a(name_a)} to {name_b} gradient wall"
    elif kind == "noise":
        t = _value_noise(rng, size, int(rng.integers(2, 7)))
        text = f"a mottled {name_a} and {name_b} wall"
    elif kind == "stripes":
        period, angle = rng.uniform(0.1, 0.3), rng.choice([0.0, np.pi / 2, np.pi / 4])
        phase = (xs * np.cos(angle) + ys * np.sin(angle)) / period
        t = (np.floor(phase) % 2).astype(np.float64)
        text = f"{_a(name_a)} and {name_b} striped wall"
    elif kind == "checks":
        period = rng.uniform(0.1, 0.25)
        t = ((np.floor(xs / period) + np.floor(ys / period)) % 2).astype(np.float64)
        text = f"{_a(name_a)} and {name_b} checkered floor"
    else:
        horizon = rng.uniform(0.3, 0.7)
        t = (ys > horizon).astype(np.float64) * (0.8 + 0.2 * ys) + 0 * xs
        text = f"{_a(name_a)} sky over {name_b} ground"
    t = np.broadcast_to(t, size)[..., None]
    grain = (_value_noise(rng, size, max(size[0] // 4, 2)) - 0.5)[..., None] * rng.uniform(0, 30)
    return np.clip(a * (1 - t) + b * t + grain, 0, 255), text


def _object(rng: np.random.Generator, size: tuple[int, int], max_side: float) -> tuple[raster.Region, str]:
    """A box, disc or pole somewhere in the image, at most `max_side` of the image across."""
    height, width = size
    kind = str(rng.choice(OBJECT_KINDS))
    centre = rng.uniform([0, height * 0.2], [width, height * 1.05])
    side = rng.uniform(0.08, max_side) * min(size)
    if kind == "box":
        half = (side / 2, side / 2 * rng.uniform(0.5, 1.5))
        return raster.rectangle(size, centre, half, float(rng.normal(0, 0.15))), kind
    if kind == "disc":
        return raster.ellipse(size, centre, (side / 2, side / 2 * rng.uniform(0.6, 1.0))), kind
    top = np.array([centre[0], rng.uniform(-0.2, 0.5) * height])
    return raster.capsule(size, top, np.array([centre[0], height * 1.1]), max(side / 8, 1.0)), kind


def _objects(rng: np.random.Generator, canvas: raster.Canvas, count: int, max_side: float) -> list[str]:
    names = []
    for _ in range(count):
        region, kind = _object(rng, canvas.size, max_side)
        name, color = _palette_color(rng)
        canvas.paint(region, 1, color, shade=0.2)
        names.append(_a(f"{name} {kind}"))
    return names


def _new_figure(rng: np.random.Generator, size: tuple[int, int]) -> _Figure:
    """A figure at a random depth: feet lower in the image = nearer = taller."""
    height, width = size
    foot_y = float(rng.uniform(0.55, 1.2)) * height
    depth = (foot_y / height - 0.55) / 0.65  # 0 far .. 1 near
    figure_height = (0.35 + 0.55 * depth) * height * float(rng.uniform(0.9, 1.1))
    foot = (float(rng.uniform(0.05, 0.95)) * width, foot_y)
    pose = random_pose(rng, foot, figure_height)
    canvas = draw_figure(size, pose, random_outfit(rng))
    return _Figure(pose=pose, canvas=canvas, keypoints=keypoints_in_image(pose, size), foot_y=foot_y)


def _visible(figures: list[_Figure], front: np.ndarray) -> list[np.ndarray]:
    """Visible part of each figure: not under a later (nearer) figure nor an object in front."""
    hidden = front.copy()
    out = []
    for figure in reversed(figures):
        out.append(figure.canvas.covered & ~hidden)
        hidden |= figure.canvas.covered
    return out[::-1]


def _place_figures(
    rng: np.random.Generator, size: tuple[int, int], n: int, front: np.ndarray, config: SynthConfig
) -> tuple[list[_Figure], list[np.ndarray]]:
    """n figures back to front whose visible parts pass the config's thresholds; figures that
    fail are drawn anew, and those still failing after `placement_tries` rounds are dropped."""
    min_pixels = max(1, round(config.min_visible_pixels * size[0] * size[1] / 64**2))
    figures = [_new_figure(rng, size) for _ in range(n)]
    for attempt in range(config.placement_tries + 1):
        figures.sort(key=lambda f: f.foot_y)
        visible = _visible(figures, front)
        ok = [
            v.sum() >= max(min_pixels, config.min_visible_fraction * f.canvas.covered.sum())
            for f, v in zip(figures, visible, strict=True)
        ]
        if all(ok):
            break
        if attempt == config.placement_tries:  # dropping a figure only uncovers the others
            figures = [f for f, good in zip(figures, ok, strict=True) if good]
            break
        figures = [f if good else _new_figure(rng, size) for f, good in zip(figures, ok, strict=True)]
    return figures, _visible(figures, front)


def _count(rng: np.random.Generator, bounds: int | tuple[int, int]) -> int:
    low, high = (bounds, bounds) if isinstance(bounds, int | np.integer) else bounds
    return int(rng.integers(low, high + 1))


def make_sample(
    seed: int,
    size: int = 64,
    n_figures: int | tuple[int, int] | None = None,
    config: SynthConfig | None = None,
) -> SynthSample:
    """The sample for `seed` (the same bytes on every run and machine): a `size` x `size` scene
    with `n_figures` people (an int, or (min, max) drawn per seed; default `config.figures`)."""
    config = config or SynthConfig()
    bounds = config.figures if n_figures is None else n_figures
    low = bounds if isinstance(bounds, int | np.integer) else min(bounds)
    if low < 1 or size < 16:
        raise ValueError(f"make_sample: need n_figures >= 1 and size >= 16, got {bounds} and {size}")
    rng = np.random.default_rng(seed)
    shape = (size, size)
    base, text = _base(rng, shape)
    back = raster.Canvas(shape)
    names = _objects(rng, back, _count(rng, config.back_objects), 0.5)
    front = raster.Canvas(shape)
    names += _objects(rng, front, _count(rng, config.front_objects), config.front_object_side)
    n = _count(rng, bounds)
    figures, visible = _place_figures(rng, shape, n, front.covered, config)
    if not figures:  # the objects in front hide every place a figure could stand: clear them
        front = raster.Canvas(shape)
        figures, visible = _place_figures(rng, shape, n, front.covered, config)

    background = base.round().astype(np.uint8)
    for layer in (back, front):
        background[layer.covered] = layer.colors[layer.covered]
    image = background.copy()
    parsing = np.zeros(shape, dtype=np.uint8)
    for figure, mask in zip(figures, visible, strict=True):
        image[mask] = figure.canvas.colors[mask]
        parsing[mask] = figure.canvas.labels[mask]
    prompt = text + (" with " + ", ".join(names) if names else "")
    return SynthSample(
        image=image,
        background=background,
        masks=np.stack(visible).astype(bool),
        keypoints=np.stack([f.keypoints for f in figures]).astype(np.float32),
        parsing=parsing,
        prompt=prompt,
        amodal=np.stack([f.canvas.covered for f in figures]),
    )
