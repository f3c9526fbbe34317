"""Reading what a user passes to `mild-erase`: image, masks, pose and parsing files.

Every check raises `InputError` (a ValueError) naming the file and the fix, before any model
work starts; harmless surprises (an alpha channel, a soft mask, an EXIF rotation) are fixed and
reported on the "mild" logger instead. Tensors come out as the pipeline wants them: image
[3, H, W] in [0, 1], masks [N, H, W] in {0, 1}, keypoints [N, 18, 3], parsing [H, W] label ids.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from reference.files import atomic_write
from reference.hmg import PARSING_CLASSES, POSE_CHANNELS

log = logging.getLogger("mild")

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L")
INTEGER_MODES = (*SIXTEEN_BIT_MODES, "I")
ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
# BODY_25 keypoints that are the OpenPose-18 (COCO) ones, in the OpenPose-18 order: it drops
# the mid-hip (8) and the six foot points (19..24).
BODY25_TO_18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
OPENPOSE_JSON = '{"people": [{"pose_keypoints_2d": [x1, y1, c1, ..., x18, y18, c18]}, ...]}'


class InputError(ValueError):
    """Bad user input; the message names the file and the fix."""


@dataclass
class ErasureInputs:
    """One erasure job as tensors; pose and parsing are None when not given (zero maps later)."""

    image: Tensor  # [3, H, W] in [0, 1]
    masks: Tensor  # [N, H, W] in {0, 1}
    keypoints: Tensor | None  # [N, 18, 3]: x, y in pixels, confidence (0 = missing)
    parsing: Tensor | None  # [H, W] int64 LIP label ids
    prompt: str
    original_size: tuple[int, int]  # (H, W)


def _check_file(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder: pass the file itself")
    if not path.is_file():
        raise InputError(f"{path} does not exist: check the path")
    return path


def _open(path: Path) -> Image.Image:
    """Decode now (not lazily) so a broken file fails here, and turn it upright as its EXIF
    orientation says, as image viewers and mask editors show it."""
    path = _check_file(path)
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise InputError(f"{path} is not a readable image ({err}): save it as PNG or JPEG") from None
    if image.getexif().get(0x0112, 1) != 1:  # 0x0112: EXIF Orientation
        log.info("%s: turned upright as its EXIF orientation says", path)
        image = ImageOps.exif_transpose(image)
    return image


def _size_text(size: Sequence[int]) -> str:
    return f"{size[1]}x{size[0]}"


def _check_size(path: Path, what: str, got: tuple[int, int], size: tuple[int, int]) -> None:
    if tuple(got) == tuple(size):
        return
    hint = " (the sides are swapped: is one file rotated by EXIF?)" if tuple(got) == tuple(size)[::-1] else ""
    raise InputError(
        f"{what} {path} is {_size_text(got)} but the image is {_size_text(size)}{hint}: "
        f"resize the {what} to the image size (nearest neighbour)"
    )


def _integer_scale(array: np.ndarray, mode: str) -> float:
    """16-bit files are scaled by 65535; a 32-bit "I" image holds 16-bit data when any value
    passes 255 and 8-bit data otherwise (older Pillow reads 16-bit PNGs as "I")."""
    return 65535.0 if mode in SIXTEEN_BIT_MODES or array.max(initial=0) > 255 else 255.0


def _to_float(image: Image.Image) -> np.ndarray:
    """A single-channel or RGB PIL image -> float32 array in [0, 1]."""
    if image.mode in INTEGER_MODES:
        array = np.asarray(image, dtype=np.float64)
        return np.clip(array / _integer_scale(array, image.mode), 0, 1).astype(np.float32)
    if image.mode == "F":
        return np.clip(np.asarray(image, dtype=np.float32), 0, 1)
    return np.asarray(image, dtype=np.float32) / 255.0


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ALPHA_MODES or (image.mode == "P" and "transparency" in image.info)


def load_image(path: Path) -> Tensor:
    """RGB [3, H, W] in [0, 1] from RGB, RGBA (alpha dropped), grayscale, palette or 16-bit files."""
    image = _open(path)
    if _has_alpha(image):
        log.info("%s has an alpha channel: it is dropped (the colours are used as they are)", path)
    if image.mode in (*INTEGER_MODES, "F"):
        gray = torch.from_numpy(_to_float(image))
        return gray[None].expand(3, -1, -1).clone()
    return torch.from_numpy(_to_float(image.convert("RGB"))).permute(2, 0, 1).contiguous()


def _mask_values(image: Image.Image, path: Path) -> np.ndarray:
    """Any mode -> float [H, W]: a colour mask counts by its brightest channel (a red person on
    black is a person), transparency as black, and a 0/1 integer mask as 0 and 1."""
    if image.mode == "1":
        image = image.convert("L")  # 0/255, not the 0/1 that np.asarray gives for mode "1"
    if image.mode in (*INTEGER_MODES, "L"):
        raw = np.asarray(image)
        if raw.max(initial=0) == 1 and raw.min(initial=0) == 0:
            log.info("mask %s holds only 0 and 1: 1 is read as the person", path)
            return raw.astype(np.float32)
    if image.mode in (*INTEGER_MODES, "F", "L"):
        return _to_float(image)
    if _has_alpha(image):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        if (rgba[..., 3] < 1).any():
            log.info("mask %s is partly transparent: transparent pixels count as black", path)
        return rgba[..., :3].max(axis=-1) * rgba[..., 3]
    return (np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).max(axis=-1)


def load_mask(path: Path, size: tuple[int, int]) -> Tensor:
    """A binary [H, W] mask (white = the person); other values are binarised at 0.5 (with a notice)."""
    values = _mask_values(_open(path), path)
    _check_size(path, "mask", values.shape, size)
    if not np.isin(values, (0.0, 1.0)).all():
        log.info("mask %s is not binary: binarised at 0.5", path)
    mask = torch.from_numpy((values >= 0.5).astype(np.float32))
    if not mask.any():
        raise InputError(
            f"mask {path} is empty (no pixel >= 0.5 after scaling to [0, 1]): "
            "draw the person in white on black"
        )
    return mask


def load_parsing(path: Path, size: tuple[int, int]) -> Tensor:
    """A human-parsing label map [H, W] int64 with LIP ids 0..19 (e.g. the raw SCHP output, whose
    palette PNG holds the ids as palette indices)."""
    image = _open(path)
    if image.mode not in ("L", "P", *INTEGER_MODES):
        raise InputError(
            f"parsing map {path} is a {image.mode} image: pass the label map itself, one LIP id 0..19 "
            "per pixel, as a single-channel (L or P) PNG, not its colour rendering"
        )
    labels = np.asarray(image).astype(np.int64)
    _check_size(path, "parsing map", labels.shape, size)
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= PARSING_CLASSES:
        bad = labels.max() if labels.max() >= PARSING_CLASSES else labels.min()
        raise InputError(
            f"parsing map {path} has label {bad}: LIP label ids are 0..{PARSING_CLASSES - 1}; "
            "pass the raw parsing output, not a rescaled or coloured rendering"
        )
    return torch.from_numpy(labels)


def _read_pose_json(path: Path) -> tuple[dict, list[np.ndarray]]:
    """The file's top-level object and its people, each pose_keypoints_2d as a flat float array."""
    path = _check_file(path)
    try:
        data = json.loads(path.read_text())
        people = [np.asarray(p["pose_keypoints_2d"], dtype=np.float64).ravel() for p in data["people"]]
        return data, people
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as err:
        raise InputError(
            f"pose file {path} is not OpenPose JSON ({type(err).__name__}: {err}): expected {OPENPOSE_JSON}"
        ) from None


def _to_openpose18(points: np.ndarray, path: Path, person: int) -> np.ndarray:
    """One person's flat keypoint list -> [18, 3]; BODY_25 files are reduced with a notice."""
    if points.size == 25 * 3:
        log.info("pose file %s: person %d is BODY_25: its 18 OpenPose-18 keypoints are used", path, person)
        return points.reshape(25, 3)[list(BODY25_TO_18)]
    if points.size != POSE_CHANNELS * 3:
        raise InputError(
            f"pose file {path}: person {person} has {points.size} numbers, expected the OpenPose-18 "
            f"layout ({POSE_CHANNELS} keypoints x (x, y, confidence) = {POSE_CHANNELS * 3} numbers) "
            "or BODY_25 (75): export the pose in one of those layouts"
        )
    return points.reshape(POSE_CHANNELS, 3)


def _canvas_scale(path: Path, data: dict, size: tuple[int, int]) -> tuple[float, float] | None:
    """(sx, sy) when the file states a canvas (pose-editor JSON) of another size than the image."""
    width, height = data.get("canvas_width"), data.get("canvas_height")
    if not isinstance(width, int | float) or not isinstance(height, int | float) or width <= 0 or height <= 0:
        return None
    if (height, width) == tuple(size):
        return None
    log.info("pose file %s: canvas %gx%g scaled to the %s image", path, width, height, _size_text(size))
    return size[1] / width, size[0] / height


def _check_inside(path: Path, keypoints: np.ndarray, size: tuple[int, int]) -> None:
    """Confident keypoints must lie on the image (1 pixel of slack): points elsewhere mean the
    pose belongs to another image or another resolution, which would mislead the guidance."""
    height, width = size
    x, y, confident = keypoints[..., 0], keypoints[..., 1], keypoints[..., 2] > 0
    outside = confident & ((x < -1) | (x > width + 1) | (y < -1) | (y > height + 1))
    if outside.any():
        person, point = (int(i) for i in np.argwhere(outside)[0])
        raise InputError(
            f"pose file {path}: person {person + 1}, keypoint {point} at ({x[person, point]:g}, "
            f"{y[person, point]:g}) lies outside the {_size_text(size)} image: keypoints are pixels of "
            "this image; run the pose detector on it (or set canvas_width/canvas_height in the file)"
        )


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def load_keypoints(path: Path, n_instances: int, size: tuple[int, int] | None = None) -> Tensor:
    """OpenPose JSON {"people": [{"pose_keypoints_2d": [x, y, c] * 18}]}, people in mask order ->
    [N, 18, 3] float32. With `size` (H, W) the points are checked against the image."""
    data, people = _read_pose_json(path)
    if len(people) != n_instances:
        raise InputError(
            f"pose file {path} lists {_count(len(people), 'person', 'people')} but there "
            f"{'is' if n_instances == 1 else 'are'} {_count(n_instances, 'mask', 'masks')}: "
            "give one person per mask, in mask order"
        )
    points = np.stack([_to_openpose18(p, path, k + 1) for k, p in enumerate(people)]).reshape(-1, 18, 3)
    if not np.isfinite(points).all():
        raise InputError(f"pose file {path} has NaN or infinite numbers: write 0 0 0 for a missing keypoint")
    if size is not None:
        scale = _canvas_scale(path, data, size)
        if scale is not None:
            points[..., 0] *= scale[0]
            points[..., 1] *= scale[1]
        _check_inside(path, points, size)
    return torch.from_numpy(points.astype(np.float32))


def load_inputs(
    image: Path,
    masks: Sequence[Path],
    pose: Path | None = None,
    parsing: Path | None = None,
    prompt: str = "",
) -> ErasureInputs:
    """All of one job's files, checked against each other (sizes, one pose per mask)."""
    if not masks:
        raise InputError("no masks given: pass one --mask per person to remove or keep")
    picture = load_image(image)
    size = (int(picture.shape[1]), int(picture.shape[2]))
    return ErasureInputs(
        image=picture,
        masks=_distinct_masks(masks, [load_mask(m, size) for m in masks]),
        keypoints=None if pose is None else load_keypoints(pose, len(masks), size),
        parsing=None if parsing is None else load_parsing(parsing, size),
        prompt=prompt,
        original_size=size,
    )


def _distinct_masks(paths: Sequence[Path], masks: list[Tensor]) -> Tensor:
    """[N, H, W]: one mask per person. A mask given twice would make two layers of one person, and
    Eq. 6 would add that person twice where both are kept."""
    for j, mask in enumerate(masks):
        for i in range(j):
            if torch.equal(masks[i], mask):
                same = "is given twice" if Path(paths[i]) == Path(paths[j]) else f"is the same as {paths[i]}"
                raise InputError(
                    f"mask {paths[j]} (--mask {j + 1}) {same} (--mask {i + 1}): give one mask per person"
                )
    return torch.stack(masks)


def pad_to_multiple(x: Tensor, multiple: int = 8, edge: bool = True) -> tuple[Tensor, tuple[int, int]]:
    """Pad the last two axes at the bottom/right to a multiple, keeping pixel coordinates (so
    keypoints stay valid): images repeat their edge, masks and labels (`edge=False`) get zeros,
    so padding never adds a person. Returns the original (H, W) to crop back to."""
    if multiple < 1:
        raise ValueError(f"pad_to_multiple: multiple must be >= 1, got {multiple}")
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if not (pad_h or pad_w):
        return x, (height, width)
    if not edge:
        return F.pad(x, (0, pad_w, 0, pad_h)), (height, width)
    work = x if x.is_floating_point() else x.double()  # replicate padding needs floats; ids stay exact
    flat = work.reshape(1, -1, height, width)  # any leading axes
    padded = F.pad(flat, (0, pad_w, 0, pad_h), mode="replicate")
    return padded.reshape(*x.shape[:-2], height + pad_h, width + pad_w).to(x.dtype), (height, width)


def crop_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Undo `pad_to_multiple`: the top-left `size` (H, W) of the last two axes."""
    if x.shape[-2] < size[0] or x.shape[-1] < size[1]:
        raise ValueError(f"crop_to: cannot crop {tuple(x.shape[-2:])} to the larger {tuple(size)}")
    return x[..., : size[0], : size[1]]


def _png_array(image: Tensor, path: Path) -> np.ndarray:
    """[H, W] or [1|3|4, H, W] in [0, 1] -> uint8 [H, W(, C)]."""
    if image.dim() == 2:
        image = image[None]
    if image.dim() != 3 or image.shape[0] not in (1, 3, 4):
        raise ValueError(
            f"save_png {path}: expected [1, 3 or 4, H, W] channels first, got {tuple(image.shape)}"
        )
    image = image.detach().float().cpu()
    if not torch.isfinite(image).all():
        raise ValueError(f"save_png {path}: the image has NaN or infinite values; nothing was written")
    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return array[..., 0] if array.shape[2] == 1 else array


def save_png(path: Path, image: Tensor) -> Path:
    """[3 or 4, H, W] (or one channel) in [0, 1] -> 8-bit RGB(A)/L PNG.

    Written atomically (`reference.files.atomic_write`): a reader never sees half a file."""
    path = Path(path)
    array = _png_array(image, path)
    return atomic_write(path, lambda f: Image.fromarray(array).save(f, format="PNG"))
