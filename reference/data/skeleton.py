"""The human skeleton the synthetic figures are built on: OpenPose-18 keypoints, limbs, LIP labels.

Keypoints are continuous pixel coordinates (pixel j covers [j, j + 1)), the convention of
`reference.hmg.render_pose_maps`, so a resize scales them by the same factor as the image and
nothing else. The pose generator is a small 2D kinematic chain with human proportions: random
enough to vary the silhouettes, constrained enough that every pose could be a person's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

KEYPOINTS = (
    "nose",
    "neck",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hip",
    "l_knee",
    "l_ankle",
    "r_eye",
    "l_eye",
    "r_ear",
    "l_ear",
)
K = {name: i for i, name in enumerate(KEYPOINTS)}

# OpenPose's 17 limbs (pairs of keypoint indices), trunk and arms first, then legs, then face.
LIMBS = tuple(
    (K[a], K[b])
    for a, b in (
        ("neck", "r_shoulder"),
        ("neck", "l_shoulder"),
        ("r_shoulder", "r_elbow"),
        ("r_elbow", "r_wrist"),
        ("l_shoulder", "l_elbow"),
        ("l_elbow", "l_wrist"),
        ("neck", "r_hip"),
        ("r_hip", "r_knee"),
        ("r_knee", "r_ankle"),
        ("neck", "l_hip"),
        ("l_hip", "l_knee"),
        ("l_knee", "l_ankle"),
        ("neck", "nose"),
        ("nose", "r_eye"),
        ("r_eye", "r_ear"),
        ("nose", "l_eye"),
        ("l_eye", "l_ear"),
    )
)


class Lip(IntEnum):
    """LIP human-parsing label ids (the ids SCHP writes; `reference.hmg.PARSING_CLASSES` = 20)."""

    BACKGROUND = 0
    HAT = 1
    HAIR = 2
    GLOVE = 3
    SUNGLASSES = 4
    UPPER_CLOTHES = 5
    DRESS = 6
    COAT = 7
    SOCKS = 8
    PANTS = 9
    JUMPSUITS = 10
    SCARF = 11
    SKIRT = 12
    FACE = 13
    LEFT_ARM = 14
    RIGHT_ARM = 15
    LEFT_LEG = 16
    RIGHT_LEG = 17
    LEFT_SHOE = 18
    RIGHT_SHOE = 19


@dataclass(frozen=True)
class Proportions:
    """Segment lengths as fractions of the figure's height (crown to sole), roughly 7.5 heads."""

    head_radius: float = 0.065
    neck_drop: float = 0.17  # crown -> neck
    shoulder_half: float = 0.11
    hip_half: float = 0.07
    torso: float = 0.30  # neck -> hip line
    upper_arm: float = 0.17
    forearm: float = 0.15
    thigh: float = 0.25
    shin: float = 0.24


@dataclass
class Pose:
    """One figure's skeleton: keypoints [18, 2] in pixels, its height and where it faces."""

    points: np.ndarray  # [18, 2] float64 (x, y)
    height: float  # crown to sole, pixels
    facing: str  # "front", "back", "left", "right"
    width_factor: float  # |cos(yaw)|: how much of the shoulder/hip width is seen

    @property
    def head_centre(self) -> np.ndarray:
        """Between the ears, a bit above the nose: where the head disc is drawn."""
        return (self.points[K["r_ear"]] + self.points[K["l_ear"]]) / 2

    @property
    def head_radius(self) -> float:
        return Proportions().head_radius * self.height


def _direction(angle: float) -> np.ndarray:
    """Unit vector for an angle measured from straight down (y grows downward), counter-clockwise
    as seen on screen when positive angles swing towards +x."""
    return np.array([np.sin(angle), np.cos(angle)])


def random_pose(rng: np.random.Generator, foot: tuple[float, float], height: float) -> Pose:
    """An articulated standing/walking/waving pose whose feet rest near `foot` (x, y) and whose
    crown is `height` pixels above them. Angles are drawn from ranges a person can hold, so the
    silhouettes look human at 64x64 without a pose prior."""
    p = Proportions()
    facing = str(rng.choice(["front", "front", "back", "left", "right"]))
    width = 1.0 if facing in ("front", "back") else float(rng.uniform(0.25, 0.5))
    width *= float(rng.uniform(0.85, 1.1))
    lean = float(rng.normal(0.0, 0.06))  # whole-body tilt, radians
    up = -_direction(lean)  # from hips towards neck
    side = np.array([-up[1], up[0]])  # screen right when upright
    if facing == "back":
        side = -side  # the person's right is on screen right when seen from behind

    leg_len = (p.thigh + p.shin) * height
    hip_mid = np.asarray(foot, dtype=np.float64) - np.array([0.0, leg_len * 0.98])
    neck = hip_mid + up * p.torso * height
    pts = np.zeros((18, 2))
    pts[K["neck"]] = neck
    # "Right" keypoints are the person's right: screen left for a figure facing the camera.
    pts[K["r_shoulder"]] = neck - side * p.shoulder_half * height * width
    pts[K["l_shoulder"]] = neck + side * p.shoulder_half * height * width
    pts[K["r_hip"]] = hip_mid - side * p.hip_half * height * width
    pts[K["l_hip"]] = hip_mid + side * p.hip_half * height * width

    stride = float(rng.uniform(0.0, 0.45)) * (1 if rng.random() < 0.5 else -1)
    bend_dir = {"left": -1.0, "right": 1.0}.get(facing, float(rng.choice([-1.0, 1.0])))
    for name, sign in (("r", -1.0), ("l", 1.0)):
        screen = sign * (-1.0 if facing == "back" else 1.0)  # +1: this limb is on screen right
        swing = lean + stride * sign + screen * 0.04 * width + float(rng.normal(0.0, 0.05))
        knee = pts[K[f"{name}_hip"]] + _direction(swing) * p.thigh * height
        shin_angle = swing - bend_dir * float(rng.uniform(0.0, 0.35)) * (1.0 if width < 0.6 else 0.3)
        pts[K[f"{name}_knee"]] = knee
        pts[K[f"{name}_ankle"]] = knee + _direction(shin_angle) * p.shin * height

        wave = rng.random() < 0.2  # an arm raised above the shoulder
        abduction = float(rng.uniform(2.0, 2.9)) if wave else float(rng.uniform(0.05, 0.7))
        upper_angle = lean + screen * abduction
        elbow = pts[K[f"{name}_shoulder"]] + _direction(upper_angle) * p.upper_arm * height
        fore_angle = upper_angle + screen * float(rng.uniform(-1.2, 1.2))
        pts[K[f"{name}_elbow"]] = elbow
        pts[K[f"{name}_wrist"]] = elbow + _direction(fore_angle) * p.forearm * height

    head = neck + up * (p.neck_drop - p.head_radius) * height
    turn = {"front": 0.0, "back": 0.0, "left": -0.6, "right": 0.6}[facing] * p.head_radius * height
    r = p.head_radius * height
    pts[K["nose"]] = head - up * 0.1 * r + side * turn
    pts[K["r_eye"]] = head + up * 0.25 * r - side * 0.35 * r * width + side * turn * 0.6
    pts[K["l_eye"]] = head + up * 0.25 * r + side * 0.35 * r * width + side * turn * 0.6
    pts[K["r_ear"]] = head - side * 0.9 * r * max(width, 0.3)
    pts[K["l_ear"]] = head + side * 0.9 * r * max(width, 0.3)
    if facing in ("left", "right"):  # both ears' midpoint stays the head centre
        pts[K["r_ear"]] = head - side * 0.15 * r
        pts[K["l_ear"]] = head + side * 0.15 * r
    return Pose(points=pts, height=height, facing=facing, width_factor=width)


def hidden_keypoints(pose: Pose) -> np.ndarray:
    """[18] bool: keypoints a pose annotator would not mark from this side (the face from behind,
    the far eye and ear in profile); they get confidence 0 like points outside the image."""
    hidden = np.zeros(18, dtype=bool)
    if pose.facing == "back":
        hidden[[K["nose"], K["r_eye"], K["l_eye"]]] = True
    elif pose.facing == "left":  # the person looks to screen left: their right side is away
        hidden[[K["r_eye"], K["r_ear"]]] = True
    elif pose.facing == "right":
        hidden[[K["l_eye"], K["l_ear"]]] = True
    return hidden


def keypoints_in_image(pose: Pose, size: tuple[int, int]) -> np.ndarray:
    """[18, 3] float32 (x, y, confidence): confidence 1 inside the image, 0 (with zero coordinates)
    outside it or where the annotator would not see the point from this side."""
    height, width = size
    x, y = pose.points[:, 0], pose.points[:, 1]
    ok = (x >= 0) & (x < width) & (y >= 0) & (y < height) & ~hidden_keypoints(pose)
    out = np.zeros((18, 3), dtype=np.float32)
    out[ok, :2] = pose.points[ok]
    out[ok, 2] = 1.0
    return out
