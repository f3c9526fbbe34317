"""`MildDataset`: a dataset folder (DESIGN.md section 2, `reference.data.folder`) read as samples.

The whole folder is checked when the dataset is opened, before any training step: images/ is
there and not empty, every image has its masks (numbered from 1 without gaps) and, for training,
its background, and every background, mask and parsing map has the image's size. Masks, pose
files and parsing maps are read in full with the loaders training uses (an empty mask, a pose
file that is not OpenPose JSON or lists another number of people, a label outside LIP's ids);
images and backgrounds by their headers. A bad folder fails at once with a ValueError naming the
file and the fix, not an hour into a run.

Files are read with `reference.inputs`' loaders (the ones `mild-erase` uses), so a mask or pose
file means the same in training as at inference.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from reference import inputs
from reference.data.folder import BACKGROUNDS, IMAGE_SUFFIXES, IMAGES, MASKS, PARSING, POSE, PROMPTS
from reference.data.transforms import merge_surplus, resize_crop

log = logging.getLogger("mild")


@dataclass
class DatasetSample:
    """One sample as numpy arrays, in the layouts `SynthSample` uses."""

    image: np.ndarray  # [H, W, 3] uint8
    background: np.ndarray | None  # [H, W, 3] uint8; None when the folder has none (inference)
    masks: np.ndarray  # [N, H, W] bool
    keypoints: np.ndarray | None  # [N, 18, 3] float32, or None without pose/<stem>.json
    parsing: np.ndarray | None  # [H, W] uint8 LIP ids, or None without parsing/<stem>.png
    prompt: str
    stem: str


@dataclass(frozen=True)
class Entry:
    """The files of one sample, found and checked when the dataset opens."""

    stem: str
    image: Path
    size: tuple[int, int]  # (H, W) of the image, EXIF orientation applied
    background: Path | None
    masks: tuple[Path, ...]
    pose: Path | None
    parsing: Path | None


def _header_size(path: Path) -> tuple[int, int]:
    """(H, W) from the file header, turned as its EXIF orientation says (as the loaders do)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 degrees
                width, height = height, width
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path} is not a readable image ({err}): save it as PNG") from None
    return height, width


def _find(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def _mask_index(root: Path) -> dict[str, dict[int, Path]]:
    """masks/<stem>_<k>.png -> {stem: {k: path}}; other files there are ignored."""
    index: dict[str, dict[int, Path]] = {}
    folder = root / MASKS
    for path in sorted(folder.glob("*.png")) if folder.is_dir() else []:
        stem, _, k = path.stem.rpartition("_")
        if stem and k.isdigit():
            index.setdefault(stem, {})[int(k)] = path
    return index


def _masks_of(root: Path, image: Path, found: dict[int, Path]) -> tuple[Path, ...]:
    stem = image.stem
    if not found:
        raise ValueError(
            f"image {image} has no mask: add {root / MASKS / f'{stem}_1.png'} (one white-on-black PNG "
            "per person, numbered from 1), or remove the image"
        )
    for k in range(1, max(found) + 1):
        if k not in found:
            raise ValueError(
                f"image {image} has masks up to {stem}_{max(found)}.png but no mask "
                f"{root / MASKS / f'{stem}_{k}.png'}: number the masks 1, 2, ... without gaps"
            )
    return tuple(found[k] for k in sorted(found))


def _check_same_size(path: Path, what: str, image: Path, size: tuple[int, int]) -> None:
    got = _header_size(path)
    if got != size:
        raise ValueError(
            f"{what} {path} is {got[1]}x{got[0]} but the image {image.name} is {size[1]}x{size[0]}: "
            f"resize the {what} to the image size"
            + (" (nearest neighbour)" if what in ("mask", "parsing map") else "")
        )


def _read_annotations(entry: Entry, size: tuple[int, int]) -> None:
    """Read the sample's masks, pose file and parsing map as training will: these are small files,
    and a bad one must fail when the dataset opens, not at the step that first draws it."""
    for mask in entry.masks:
        inputs.load_mask(mask, size)
    if entry.pose is not None:
        inputs.load_keypoints(entry.pose, len(entry.masks), size)
    if entry.parsing is not None:
        inputs.load_parsing(entry.parsing, size)


def _entry(root: Path, image: Path, masks: dict[int, Path], train: bool) -> Entry:
    """One image's files, found and checked (sizes from the headers, then the annotations read)."""
    stem, size = image.stem, _header_size(image)
    mask_paths = _masks_of(root, image, masks)
    background = _find(root / BACKGROUNDS, stem)
    if background is None and train:
        raise ValueError(
            f"image {image} has no clean background: training needs "
            f"{root / BACKGROUNDS / f'{stem}.png'} (the same scene without the people)"
        )
    pose = root / POSE / f"{stem}.json"
    parsing = root / PARSING / f"{stem}.png"
    for path, what in [(background, "background"), *((m, "mask") for m in mask_paths)]:
        if path is not None:
            _check_same_size(path, what, image, size)
    if parsing.is_file():
        _check_same_size(parsing, "parsing map", image, size)
    entry = Entry(
        stem=stem,
        image=image,
        size=size,
        background=background,
        masks=mask_paths,
        pose=pose if pose.is_file() else None,
        parsing=parsing if parsing.is_file() else None,
    )
    _read_annotations(entry, size)
    return entry


def scan_folder(root: Path, train: bool) -> list[Entry]:
    """Every image's files, checked; raises ValueError naming the first bad file and the fix."""
    root = Path(root)
    if not root.exists():
        raise ValueError(f"dataset folder {root} does not exist: check --data (make one with mild-synth)")
    if not root.is_dir():
        raise ValueError(f"dataset folder {root} is a file: give the folder that holds {IMAGES}/")
    if not (root / IMAGES).is_dir():
        raise ValueError(f"dataset folder {root} has no {IMAGES}/ folder: the photos go in {root / IMAGES}")
    images = sorted(p for p in (root / IMAGES).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"dataset folder {root} has no images in {root / IMAGES}: add PNG or JPEG photos")
    stems = [p.stem for p in images]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise ValueError(f"{root / IMAGES} holds two images named {dup}.*: keep one per name")
    masks = _mask_index(root)
    entries = [_entry(root, image, masks.get(image.stem, {}), train) for image in images]
    orphans = sorted(set(masks) - set(stems))
    if orphans:
        stems_text = f"{len(orphans)} stem{'' if len(orphans) == 1 else 's'}"
        log.info("%s: masks of %s without an image are ignored (%s)", root / MASKS, stems_text, orphans[0])
    return entries


def read_prompts(root: Path) -> dict[str, str]:
    """prompts.jsonl -> {stem: prompt}; "image" may be the stem or the file name."""
    path = Path(root) / PROMPTS
    if not path.is_file():
        return {}
    prompts = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            prompts[Path(str(record["image"])).stem] = str(record["prompt"])
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(
                f'{path} line {number} is not {{"image": stem, "prompt": text}} ({err}): fix or delete it'
            ) from None
    return prompts


def _uint8(image: torch.Tensor) -> np.ndarray:
    """[3, H, W] in [0, 1] -> [H, W, 3] uint8 (exact for 8-bit files)."""
    return (image * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


class MildDataset:
    """Index -> `DatasetSample`, optionally resized and cropped to `size` x `size`.

    With more than `max_instances` people in a sample, a random `max_instances - 1` keep their own
    masks and the rest share the last one (see `transforms.merge_surplus`), drawn per (seed, epoch,
    index); `set_epoch` moves to new draws. Training crops at random, evaluation at the centre.
    """

    def __init__(
        self,
        root: Path,
        train: bool = True,
        size: int | None = None,
        max_instances: int = 4,
        seed: int = 0,
    ):
        if size is not None and size < 8:
            raise ValueError(f"MildDataset: size must be at least 8 pixels, got {size}")
        if max_instances < 1:
            raise ValueError(f"MildDataset: max_instances must be at least 1, got {max_instances}")
        self.root, self.train, self.size = Path(root), train, size
        self.max_instances, self.seed, self.epoch = max_instances, seed, 0
        self.entries = scan_folder(self.root, train)
        self.prompts = read_prompts(self.root)

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def read(self, index: int) -> DatasetSample:
        """The sample's files as they are on disk (no subset, no resize)."""
        entry = self.entries[index]
        image = inputs.load_image(entry.image)
        size = (int(image.shape[1]), int(image.shape[2]))
        masks = torch.stack([inputs.load_mask(m, size) for m in entry.masks]).numpy() > 0.5
        pose = None if entry.pose is None else inputs.load_keypoints(entry.pose, len(masks), size).numpy()
        parsing = None if entry.parsing is None else inputs.load_parsing(entry.parsing, size).numpy()
        return DatasetSample(
            image=_uint8(image),
            background=None if entry.background is None else _uint8(inputs.load_image(entry.background)),
            masks=masks,
            keypoints=pose,
            parsing=None if parsing is None else parsing.astype(np.uint8),
            prompt=self.prompts.get(entry.stem, ""),
            stem=entry.stem,
        )

    def __getitem__(self, index: int) -> DatasetSample:
        return self.at_epoch(index, self.epoch)

    def at_epoch(self, index: int, epoch: int) -> DatasetSample:
        """Sample `index` with the draws of `epoch`: the trainer's data order names the epoch of every
        index it hands out, so DataLoader workers need no shared epoch counter."""
        if not 0 <= index < len(self):
            raise IndexError(f"MildDataset: index {index} out of range (0..{len(self) - 1})")
        rng = np.random.default_rng([self.seed, epoch, index])
        sample = merge_surplus(self.read(index), self.max_instances, rng)
        if self.size is not None:
            sample = resize_crop(sample, self.size, rng if self.train else None, self.entries[index].image)
        return sample
