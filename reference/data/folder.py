"""The dataset folder of DESIGN.md section 2, and writing samples into it.

    images/<stem>.png          the photo
    backgrounds/<stem>.png     its clean background (needed for training)
    masks/<stem>_<k>.png       one white-on-black mask per person, k = 1, 2, ...
    pose/<stem>.json           OpenPose JSON, people in mask order (optional)
    parsing/<stem>.png         LIP label ids 0..19, single channel (optional)
    prompts.jsonl              {"image": stem, "prompt": ...} per line (optional)

Every file is written under a temporary name and renamed into place (as `reference.inputs.save_png`
does), so a reader, or a training run started meanwhile, never sees half a file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from reference.files import atomic_write

IMAGES, BACKGROUNDS, MASKS, POSE, PARSING = "images", "backgrounds", "masks", "pose", "parsing"
PROMPTS = "prompts.jsonl"
SUBFOLDERS = (IMAGES, BACKGROUNDS, MASKS, POSE, PARSING)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def mask_name(stem: str, k: int) -> str:
    """masks/ file of instance k (counted from 1, in mask order)."""
    return f"{stem}_{k}.png"


def write_png(path: Path, array: np.ndarray) -> Path:
    """uint8 [H, W] (L) or [H, W, 3] (RGB) -> PNG, byte-exact."""
    if array.dtype != np.uint8:
        raise ValueError(f"write_png {path}: expected uint8 pixels, got {array.dtype}")
    return atomic_write(path, lambda f: Image.fromarray(array).save(f, format="PNG"))


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def openpose_json(keypoints: np.ndarray) -> str:
    """[N, 18, 3] -> {"people": [{"pose_keypoints_2d": [x, y, c] * 18}, ...]} (the layout that
    `reference.inputs.load_keypoints` reads), one person per mask in mask order."""
    # str() of a float32 is its shortest exact text: the file reads back to the same float32s.
    people = [
        {"pose_keypoints_2d": [float(str(v)) for v in person.astype(np.float32).ravel()]}
        for person in keypoints
    ]
    return json.dumps({"people": people})


def make_folders(root: Path) -> None:
    for name in SUBFOLDERS:
        (Path(root) / name).mkdir(parents=True, exist_ok=True)


def write_sample(root: Path, stem: str, sample: Any) -> None:
    """One sample (anything with image, background, masks, keypoints, parsing as numpy arrays in
    `SynthSample`'s layouts) into the folder's subfolders; the prompt goes to `write_prompts`."""
    root = Path(root)
    write_png(root / IMAGES / f"{stem}.png", np.asarray(sample.image, dtype=np.uint8))
    if sample.background is not None:
        write_png(root / BACKGROUNDS / f"{stem}.png", np.asarray(sample.background, dtype=np.uint8))
    for k, mask in enumerate(np.asarray(sample.masks), start=1):
        write_png(root / MASKS / mask_name(stem, k), np.where(mask > 0, 255, 0).astype(np.uint8))
    if sample.keypoints is not None:
        write_text(root / POSE / f"{stem}.json", openpose_json(np.asarray(sample.keypoints)))
    if sample.parsing is not None:
        write_png(root / PARSING / f"{stem}.png", np.asarray(sample.parsing, dtype=np.uint8))


def write_prompts(root: Path, prompts: Iterable[tuple[str, str]]) -> Path:
    """prompts.jsonl from (stem, prompt) pairs, in one atomic write."""
    lines = "".join(json.dumps({"image": stem, "prompt": prompt}) + "\n" for stem, prompt in prompts)
    return write_text(Path(root) / PROMPTS, lines)
