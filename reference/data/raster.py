"""Hard-edged shapes from distance fields, in numpy, for the synthetic scenes.

No anti-aliasing on purpose: every pixel belongs to exactly one shape, so a figure's mask is
exactly where its colours are and the clean background is exact ground truth outside the masks.
Each shape is evaluated on its bounding box only (a `Region`), which keeps drawing cheap at any
image size. Pixel j covers [j, j + 1), its centre is j + 0.5 (the keypoint convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Region:
    """A shape: boolean `mask` over the image window rows[y0:y1], columns[x0:x1]."""

    y0: int
    y1: int
    x0: int
    x1: int
    mask: np.ndarray  # [y1 - y0, x1 - x0] bool

    @property
    def window(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel centres of the window: ys [h, 1], xs [1, w]."""
        ys = np.arange(self.y0, self.y1, dtype=np.float64)[:, None] + 0.5
        xs = np.arange(self.x0, self.x1, dtype=np.float64)[None, :] + 0.5
        return ys, xs

    def where(self, keep: np.ndarray) -> Region:
        """The same window with only the pixels where `keep` (window-shaped) holds."""
        return Region(self.y0, self.y1, self.x0, self.x1, mask=self.mask & keep)

    def full(self, size: tuple[int, int]) -> np.ndarray:
        """The shape as an [H, W] bool mask."""
        out = np.zeros(size, dtype=bool)
        out[self.window] = self.mask
        return out


def _window(size: tuple[int, int], lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Pixel centres (ys [h, 1], xs [1, w]) of the pixels whose centres may lie in [lo, hi]."""
    height, width = size
    x0, y0 = (max(0, int(np.floor(v - 0.5))) for v in lo)
    x1 = min(width, max(0, int(np.ceil(hi[0] + 0.5))))
    y1 = min(height, max(0, int(np.ceil(hi[1] + 0.5))))
    x1, y1 = max(x1, x0), max(y1, y0)
    ys = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5
    xs = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5
    return ys, xs, (y0, y1, x0, x1)


def capsule(size: tuple[int, int], a: np.ndarray, b: np.ndarray, radius: float) -> Region:
    """Points within `radius` of the segment a-b: limbs, necks, poles."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ys, xs, box = _window(size, np.minimum(a, b) - radius, np.maximum(a, b) + radius)
    ab = b - a
    length2 = float(ab @ ab)
    px, py = xs - a[0], ys - a[1]
    t = np.clip((px * ab[0] + py * ab[1]) / length2, 0.0, 1.0) if length2 > 0 else np.zeros_like(px + py)
    dx, dy = px - t * ab[0], py - t * ab[1]
    return Region(*box, mask=dx * dx + dy * dy <= radius * radius)


def ellipse(
    size: tuple[int, int], centre: np.ndarray, radii: tuple[float, float], angle: float = 0.0
) -> Region:
    """A filled ellipse with semi-axes `radii` (along x, y before rotating by `angle` radians)."""
    c = np.asarray(centre, dtype=np.float64)
    reach = max(radii)
    ys, xs, box = _window(size, c - reach, c + reach)
    cos, sin = np.cos(angle), np.sin(angle)
    u = (xs - c[0]) * cos + (ys - c[1]) * sin
    v = -(xs - c[0]) * sin + (ys - c[1]) * cos
    return Region(*box, mask=(u / radii[0]) ** 2 + (v / radii[1]) ** 2 <= 1.0)


def polygon(size: tuple[int, int], points: np.ndarray) -> Region:
    """A filled convex polygon (either winding): inside every edge's half-plane."""
    pts = np.asarray(points, dtype=np.float64)
    ys, xs, box = _window(size, pts.min(axis=0), pts.max(axis=0))
    edges = np.roll(pts, -1, axis=0) - pts
    signed_area = float(np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1]))
    sign = 1.0 if signed_area >= 0 else -1.0
    inside = np.ones(np.broadcast_shapes(ys.shape, xs.shape), dtype=bool)
    for p, e in zip(pts, edges, strict=True):
        inside &= sign * (e[0] * (ys - p[1]) - e[1] * (xs - p[0])) >= 0
    return Region(*box, mask=inside)


def rectangle(
    size: tuple[int, int], centre: np.ndarray, half: tuple[float, float], angle: float = 0.0
) -> Region:
    """A filled rectangle of half sides `half` rotated by `angle` radians about its centre."""
    cos, sin = np.cos(angle), np.sin(angle)
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) * half
    rot = np.array([[cos, -sin], [sin, cos]])
    return polygon(size, corners @ rot.T + np.asarray(centre, dtype=np.float64))


class Canvas:
    """A label map and its colours, painted back to front (later paint covers earlier)."""

    def __init__(self, size: tuple[int, int]):
        self.size = size
        self.labels = np.zeros(size, dtype=np.uint8)
        self.colors = np.zeros((*size, 3), dtype=np.uint8)
        self.covered = np.zeros(size, dtype=bool)

    def paint(self, region: Region, label: int, color: np.ndarray, shade: float = 0.15) -> None:
        """Fill `region` with `color`, darker towards its bottom by up to `shade` (a hint of
        light from above, so flat parts of one colour still show their outline)."""
        if region.mask.size == 0 or not region.mask.any():
            return
        window, mask = region.window, region.mask
        rows = np.arange(region.y1 - region.y0, dtype=np.float64)
        factor = 1.0 + shade / 2 - shade * rows / max(len(rows) - 1, 1)
        rgb = np.clip(np.asarray(color, dtype=np.float64)[None, :] * factor[:, None], 0, 255)
        shaded = np.broadcast_to(rgb[:, None, :], (*mask.shape, 3)).round().astype(np.uint8)
        self.labels[window][mask] = label
        self.colors[window][mask] = shaded[mask]
        self.covered[window] |= mask
