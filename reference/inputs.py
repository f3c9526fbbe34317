"""Reading what a user passes to `mild-erase`: image, masks, pose and parsing files.

Every check raises `InputError` (a ValueError) naming the file and the fix, before any model
work starts. Tensors come out as the pipeline wants them: image [3, H, W] in [0, 1], masks
[N, H, W] in {0, 1}, keypoints [N, 18, 3], parsing [H, W] label ids.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from reference.hmg import PARSING_CLASSES, POSE_CHANNELS

log = logging.getLogger("mild")


class InputError(ValueError):
    """Bad user input; the message names the file and the fix."""


@dataclass
class ErasureInputs:
    image: Tensor  # [3, H, W] in [0, 1]
    masks: Tensor  # [N, H, W] in {0, 1}
    keypoints: Tensor | None  # [N, 18, 3]: x, y in pixels, confidence (0 = missing)
    parsing: Tensor | None  # [H, W] int64 LIP label ids
    prompt: str
    original_size: tuple[int, int]


def _open(path: Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist: check the path")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(f"{path} is not a readable image ({err}): save it as PNG or JPEG") from None
    return image


def _to_float(image: Image.Image) -> np.ndarray:
    """Any PIL mode -> float32 array in [0, 1], 16-bit images scaled by 65535."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        return (array / (65535.0 if array.max() > 255 or image.mode.startswith("I;16") else 255.0)).astype(
            np.float32
        )
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)
    return np.asarray(image, dtype=np.float32) / 255.0


def load_image(path: Path) -> Tensor:
    """RGB [3, H, W] in [0, 1] from RGB, RGBA (alpha dropped), grayscale, palette or 16-bit files."""
    image = _open(path)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        log.info("%s has an alpha channel: it is ignored (the colours are used as they are)", path)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        gray = _to_float(image)
        return torch.from_numpy(np.clip(gray, 0, 1))[None].expand(3, -1, -1).clone()
    return torch.from_numpy(_to_float(image.convert("RGB"))).permute(2, 0, 1).contiguous()


def load_mask(path: Path, size: tuple[int, int]) -> Tensor:
    """A binary [H, W] mask; other values are binarised at 0.5 (with a notice)."""
    image = _open(path)
    if image.mode in ("RGBA", "LA"):
        image = image.getchannel("A") if image.mode == "LA" else image.convert("L")
    gray = _to_float(
        image if image.mode in ("L", "1", "I;16", "I;16B", "I;16L", "I", "F") else image.convert("L")
    )
    if gray.shape != tuple(size):
        raise InputError(
            f"mask {path} is {gray.shape[1]}x{gray.shape[0]} but the image is {size[1]}x{size[0]}: "
            "resize the mask to the image size (nearest neighbour)"
        )
    if not np.isin(gray, (0.0, 1.0)).all():
        log.info("mask %s is not binary: binarised at 0.5", path)
    mask = torch.from_numpy((gray >= 0.5).astype(np.float32))
    if not mask.any():
        raise InputError(f"mask {path} is empty (no pixel >= 0.5): draw the person in white on black")
    return mask


def load_parsing(path: Path, size: tuple[int, int]) -> Tensor:
    image = _open(path)
    if image.mode not in ("L", "P", "I", "I;16"):
        raise InputError(
            f"parsing map {path} must be a single-channel label image (LIP ids 0..19), got {image.mode}"
        )
    labels = np.asarray(image, dtype=np.int64)
    if labels.shape != tuple(size):
        raise InputError(
            f"parsing map {path} is {labels.shape[1]}x{labels.shape[0]} but the image is "
            f"{size[1]}x{size[0]}: resize it to the image size (nearest neighbour)"
        )
    if labels.max() >= PARSING_CLASSES:
        raise InputError(
            f"parsing map {path} has label {labels.max()}: LIP label ids are 0..{PARSING_CLASSES - 1}"
        )
    return torch.from_numpy(labels)


def load_keypoints(path: Path, n_instances: int) -> Tensor:
    """OpenPose JSON {"people": [{"pose_keypoints_2d": [x, y, c] * 18}]}, people in mask order."""
    path = Path(path)
    try:
        people = json.loads(path.read_text())["people"]
        points = [np.asarray(p["pose_keypoints_2d"], dtype=np.float32) for p in people]
    except FileNotFoundError:
        raise InputError(f"{path} does not exist: check the path") from None
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(
            f"pose file {path} is not OpenPose JSON ({err}): expected "
            '{"people": [{"pose_keypoints_2d": [x, y, c, ...]}]}'
        ) from None
    if len(points) != n_instances:
        raise InputError(
            f"pose file {path} has {len(points)} people but there are {n_instances} masks: "
            "give one person per mask, in mask order"
        )
    for k, p in enumerate(points):
        if p.size != POSE_CHANNELS * 3:
            raise InputError(
                f"pose file {path}: person {k + 1} has {p.size // 3} keypoints, expected the "
                f"OpenPose-18 layout ({POSE_CHANNELS * 3} numbers)"
            )
    return torch.from_numpy(np.stack(points).reshape(n_instances, POSE_CHANNELS, 3))


def load_inputs(
    image: Path, masks: list[Path], pose: Path | None = None, parsing: Path | None = None, prompt: str = ""
) -> ErasureInputs:
    if not masks:
        raise InputError("no masks given: pass one --mask per person to remove or keep")
    picture = load_image(image)
    size = tuple(picture.shape[1:])
    return ErasureInputs(
        image=picture,
        masks=torch.stack([load_mask(m, size) for m in masks]),
        keypoints=None if pose is None else load_keypoints(pose, len(masks)),
        parsing=None if parsing is None else load_parsing(parsing, size),
        prompt=prompt,
        original_size=size,
    )


def pad_to_multiple(x: Tensor, multiple: int = 8, edge: bool = True) -> tuple[Tensor, tuple[int, int]]:
    """Pad the last two axes at the bottom/right to a multiple, keeping pixel coordinates (so
    keypoints stay valid): images repeat their edge, masks and labels (`edge=False`) get zeros.
    Returns the original size to crop back to."""
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        if edge:
            x = F.pad(x.float()[None], (0, pad_w, 0, pad_h), mode="replicate")[0].to(x.dtype)
        else:
            x = F.pad(x, (0, pad_w, 0, pad_h))
    return x, (height, width)


def crop_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    return x[..., : size[0], : size[1]]


def save_png(path: Path, image: Tensor) -> Path:
    """[3 or 4, H, W] in [0, 1] -> 8-bit RGB(A) PNG, written under a temporary name first."""
    path = Path(path)
    array = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    try:
        Image.fromarray(array, "RGBA" if array.shape[2] == 4 else "RGB").save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
