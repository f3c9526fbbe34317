"""Human-like figures drawn from a skeleton, one LIP part label per pixel.

A figure is a few capsules, ellipses and convex polygons on the OpenPose-18 skeleton, painted back
to front: legs, shoes, skirt or dress, far arm (in profile), torso, scarf, near arms, head, hair,
hat, sunglasses. Each part is painted with its LIP id, so the parsing map is exact by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from reference.data import raster
from reference.data.skeleton import K, Lip, Pose

SKIN_TONES = np.array(
    [[255, 224, 196], [241, 194, 157], [224, 172, 125], [198, 134, 66], [141, 85, 36], [96, 60, 34]],
    dtype=np.float64,
)
HAIR_COLORS = np.array(
    [
        [20, 16, 14],
        [60, 40, 25],
        [110, 75, 40],
        [180, 140, 80],
        [225, 200, 140],
        [150, 40, 20],
        [160, 160, 160],
    ],
    dtype=np.float64,
)
# Limb radii as fractions of the figure's height.
RADIUS = {"thigh": 0.048, "shin": 0.038, "upper_arm": 0.032, "forearm": 0.027, "hand": 0.03, "shoe": 0.03}


def _color(rng: np.random.Generator, base: np.ndarray | None = None, jitter: float = 12.0) -> np.ndarray:
    base = rng.uniform(20, 235, 3) if base is None else base
    return np.clip(base + rng.normal(0.0, jitter, 3), 0, 255)


@dataclass
class Outfit:
    """What a figure wears: which LIP labels its parts get, and the colour of each label."""

    upper: Lip  # UPPER_CLOTHES, COAT, DRESS or JUMPSUITS
    lower: Lip  # PANTS, SKIRT, JUMPSUITS, or LEFT_LEG for bare legs (under a dress)
    sleeves: int  # 0 sleeveless, 1 short, 2 long
    hat: bool = False
    sunglasses: bool = False
    scarf: bool = False
    gloves: bool = False
    colors: dict[int, np.ndarray] = field(default_factory=dict)


def random_outfit(rng: np.random.Generator) -> Outfit:
    upper = Lip(rng.choice([Lip.UPPER_CLOTHES] * 4 + [Lip.COAT, Lip.COAT, Lip.DRESS, Lip.JUMPSUITS]))
    if upper == Lip.DRESS:
        lower = Lip.LEFT_LEG
    elif upper == Lip.JUMPSUITS:
        lower = Lip.JUMPSUITS
    else:
        lower = Lip(rng.choice([Lip.PANTS, Lip.PANTS, Lip.PANTS, Lip.SKIRT]))
    skin = _color(rng, SKIN_TONES[rng.integers(len(SKIN_TONES))], 8.0)
    colors = {int(label): _color(rng) for label in Lip}
    for label in (Lip.FACE, Lip.LEFT_ARM, Lip.RIGHT_ARM, Lip.LEFT_LEG, Lip.RIGHT_LEG):
        colors[int(label)] = skin
    colors[int(Lip.HAIR)] = _color(rng, HAIR_COLORS[rng.integers(len(HAIR_COLORS))], 8.0)
    colors[int(Lip.SUNGLASSES)] = np.array([15.0, 15.0, 20.0])
    shoe = _color(rng, np.full(3, rng.uniform(10, 120)))
    colors[int(Lip.LEFT_SHOE)] = colors[int(Lip.RIGHT_SHOE)] = shoe
    return Outfit(
        upper=upper,
        lower=lower,
        sleeves=int(rng.integers(0, 3)) if upper != Lip.COAT else 2,
        hat=bool(rng.random() < 0.2),
        sunglasses=bool(rng.random() < 0.15),
        scarf=bool(rng.random() < 0.1),
        gloves=bool(rng.random() < 0.1),
        colors=colors,
    )


def _legs(canvas: raster.Canvas, pose: Pose, outfit: Outfit) -> None:
    pts, h, size = pose.points, pose.height, canvas.size
    for side, bare in (("r", Lip.RIGHT_LEG), ("l", Lip.LEFT_LEG)):
        label = bare if outfit.lower in (Lip.SKIRT, Lip.LEFT_LEG) else outfit.lower
        hip, knee, ankle = pts[K[f"{side}_hip"]], pts[K[f"{side}_knee"]], pts[K[f"{side}_ankle"]]
        color = outfit.colors[int(label)]
        canvas.paint(raster.capsule(size, hip, knee, RADIUS["thigh"] * h), label, color)
        canvas.paint(raster.capsule(size, knee, ankle, RADIUS["shin"] * h), label, color)


def _shoes(canvas: raster.Canvas, pose: Pose, outfit: Outfit) -> None:
    h = pose.height
    toe = {"left": np.array([-1.0, 0.3]), "right": np.array([1.0, 0.3])}.get(pose.facing, np.array([0, 0.6]))
    for side, label in (("r", Lip.RIGHT_SHOE), ("l", Lip.LEFT_SHOE)):
        ankle = pose.points[K[f"{side}_ankle"]]
        region = raster.capsule(canvas.size, ankle, ankle + toe * 0.05 * h, RADIUS["shoe"] * h)
        canvas.paint(region, label, outfit.colors[int(label)])


def _torso_frame(pose: Pose) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """(neck, hip centre, unit screen-right vector, shoulder and hip half widths in pixels)."""
    pts, h = pose.points, pose.height
    neck = pts[K["neck"]]
    hip_mid = (pts[K["r_hip"]] + pts[K["l_hip"]]) / 2
    down = (hip_mid - neck) / max(np.linalg.norm(hip_mid - neck), 1e-6)
    right = np.array([-down[1], down[0]])
    shoulders = max(np.linalg.norm(pts[K["l_shoulder"]] - pts[K["r_shoulder"]]) / 2 + 0.03 * h, 0.06 * h)
    hips = max(np.linalg.norm(pts[K["l_hip"]] - pts[K["r_hip"]]) / 2 + 0.035 * h, 0.06 * h)
    return neck, hip_mid, right, shoulders, hips


def _lower_garment(canvas: raster.Canvas, pose: Pose, outfit: Outfit) -> None:
    """Skirt (to mid-thigh) or the dress's skirt (to the knees): a trapezoid below the hips."""
    if outfit.upper != Lip.DRESS and outfit.lower != Lip.SKIRT:
        return
    neck, hip_mid, right, _, hips = _torso_frame(pose)
    down = (hip_mid - neck) / max(np.linalg.norm(hip_mid - neck), 1e-6)
    length = (0.17 if outfit.upper == Lip.DRESS else 0.11) * pose.height
    top = hip_mid - down * 0.03 * pose.height
    bottom = hip_mid + down * length
    flare = hips * 1.35
    quad = [top - right * hips, top + right * hips, bottom + right * flare, bottom - right * flare]
    label = Lip.DRESS if outfit.upper == Lip.DRESS else Lip.SKIRT
    canvas.paint(raster.polygon(canvas.size, np.array(quad)), label, outfit.colors[int(label)])


def _torso(canvas: raster.Canvas, pose: Pose, outfit: Outfit) -> None:
    neck, hip_mid, right, shoulders, hips = _torso_frame(pose)
    down = (hip_mid - neck) / max(np.linalg.norm(hip_mid - neck), 1e-6)
    h = pose.height
    head = pose.head_centre
    canvas.paint(raster.capsule(canvas.size, neck, head, 0.03 * h), Lip.FACE, outfit.colors[int(Lip.FACE)])
    top = neck + down * 0.01 * h
    bottom = hip_mid + down * (0.08 if outfit.upper == Lip.COAT else 0.02) * h
    quad = [top - right * shoulders, top + right * shoulders, bottom + right * hips, bottom - right * hips]
    color = outfit.colors[int(outfit.upper)]
    canvas.paint(raster.polygon(canvas.size, np.array(quad)), outfit.upper, color)
    if outfit.scarf:
        scarf = raster.capsule(canvas.size, neck - right * 0.04 * h, neck + right * 0.04 * h, 0.025 * h)
        canvas.paint(scarf, Lip.SCARF, outfit.colors[int(Lip.SCARF)])


def _arm(canvas: raster.Canvas, pose: Pose, outfit: Outfit, side: str) -> None:
    pts, h, size = pose.points, pose.height, canvas.size
    skin = Lip.RIGHT_ARM if side == "r" else Lip.LEFT_ARM
    sleeve = outfit.upper if outfit.upper != Lip.DRESS else Lip.DRESS
    shoulder, elbow, wrist = pts[K[f"{side}_shoulder"]], pts[K[f"{side}_elbow"]], pts[K[f"{side}_wrist"]]
    upper = sleeve if outfit.sleeves >= 1 else skin
    lower = sleeve if outfit.sleeves == 2 else skin
    canvas.paint(
        raster.capsule(size, shoulder, elbow, RADIUS["upper_arm"] * h), upper, outfit.colors[int(upper)]
    )
    canvas.paint(raster.capsule(size, elbow, wrist, RADIUS["forearm"] * h), lower, outfit.colors[int(lower)])
    hand = Lip.GLOVE if outfit.gloves else skin
    centre = wrist + (wrist - elbow) / max(np.linalg.norm(wrist - elbow), 1e-6) * 0.02 * h
    region = raster.ellipse(size, centre, (RADIUS["hand"] * h, RADIUS["hand"] * h))
    canvas.paint(region, hand, outfit.colors[int(hand)])


def _head(canvas: raster.Canvas, pose: Pose, outfit: Outfit) -> None:
    size, centre, r = canvas.size, pose.head_centre, pose.head_radius
    head = raster.ellipse(size, centre, (r * 0.9, r))
    canvas.paint(head, Lip.FACE, outfit.colors[int(Lip.FACE)], shade=0.05)
    ys, xs = head.centres()
    hair = ys < centre[1] - 0.35 * r  # front: a cap above the forehead
    if pose.facing == "back":
        hair = ys < centre[1] + 0.6 * r
    elif pose.facing in ("left", "right"):
        behind = (xs - centre[0]) * (1 if pose.facing == "left" else -1) > 0.1 * r
        hair = hair | behind
    canvas.paint(head.where(hair), Lip.HAIR, outfit.colors[int(Lip.HAIR)], shade=0.05)
    if outfit.hat:
        crown = raster.rectangle(size, centre - [0, 0.95 * r], (0.75 * r, 0.4 * r))
        canvas.paint(crown, Lip.HAT, outfit.colors[int(Lip.HAT)], shade=0.05)
        brim = raster.rectangle(size, centre - [0, 0.6 * r], (1.2 * r, 0.14 * r))
        canvas.paint(brim, Lip.HAT, outfit.colors[int(Lip.HAT)], shade=0.0)
    if outfit.sunglasses and pose.facing != "back":
        eyes = pose.points[[K["r_eye"], K["l_eye"]]]
        mid, span = eyes.mean(axis=0), max(abs(eyes[1, 0] - eyes[0, 0]) / 2, 0.3 * r)
        offset = np.array([span, 0.0])
        glasses = raster.capsule(size, mid - offset, mid + offset, 0.22 * r)
        canvas.paint(glasses, Lip.SUNGLASSES, outfit.colors[int(Lip.SUNGLASSES)], shade=0.0)


def draw_figure(size: tuple[int, int], pose: Pose, outfit: Outfit) -> raster.Canvas:
    """The figure alone on an empty canvas: `labels` (LIP ids, 0 off the figure), `colors`, `covered`."""
    canvas = raster.Canvas(size)
    # In profile the arm on the far side is hidden behind the torso; facing left, that is the right arm.
    far = {"left": "r", "right": "l"}.get(pose.facing)
    _legs(canvas, pose, outfit)
    _shoes(canvas, pose, outfit)
    _lower_garment(canvas, pose, outfit)
    if far:
        _arm(canvas, pose, outfit, far)
    _torso(canvas, pose, outfit)
    for side in ("r", "l"):
        if side != far:
            _arm(canvas, pose, outfit, side)
    _head(canvas, pose, outfit)
    return canvas
