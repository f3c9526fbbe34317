"""Checks of command-line values that several commands share, made before any work starts: a
typo in an output path or a device should cost a second, not a model load and a run's worth of
compute, and leave nothing behind."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from mild_export.export.contracts import ExportShapes, check_resolutions


def output_folder(path: Path, option: str = "--out") -> None:
    """A folder to write into: new, or an existing folder (made when the first file is written)."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is a file: choose a folder")
    _writable_place(path, (path, *path.absolute().parents), option)


def output_file(path: Path | None, option: str, example: str) -> None:
    """A file to write: not an existing folder (`example`: a file name to suggest inside it), in a
    place where it can be written, so that a benchmark's minutes are not lost at the write."""
    if path is None:
        return
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder: give a file name, e.g. {path / example}")
    _writable_place(path, path.absolute().parents, option)


def _writable_place(path: Path, places: Sequence[Path], option: str) -> None:
    """The first of `places` that exists (the folder itself, else its nearest parent: the missing
    ones are made at the first write) must be a folder that takes a file: a probe file is made
    there and deleted, since permission bits say nothing for root or a read-only mount."""
    place = next(p for p in places if p.exists())
    if not place.is_dir():
        raise ValueError(
            f"{option} {path}: {place} is a file, so no folder can be made there: choose another"
        )
    try:
        with tempfile.TemporaryFile(dir=place):
            pass
    except OSError as err:
        raise ValueError(
            f"{option} {path}: {place} is not writable ({err.strerror}): choose another"
        ) from None


def model_resolutions(model: str, sides: Sequence[int] | None) -> None:
    """Image sides the model cannot take fail before it loads: SDXL's random weights take a minute
    on a CPU, a model folder's weights seconds to minutes, and its configuration files say enough."""
    from reference.model import declared_config  # diffusers: seconds to import, --help need not wait

    if sides:
        check_resolutions(declared_config(model), ExportShapes(resolutions=tuple(sides)))


def device(name: str | None, option: str = "--device") -> torch.device:
    """cpu or cuda (cuda:K too), with CUDA visible to PyTorch where asked for; None: cuda where
    PyTorch sees a GPU, else cpu."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        parsed = torch.device(name)
    except RuntimeError:
        raise ValueError(f"{option} {name!r}: give cpu or cuda") from None
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"{option} {name!r}: give cpu or cuda")
    if parsed.type == "cpu":
        return parsed
    if not torch.cuda.is_available():
        raise ValueError(f"{option} {name}: no CUDA device is visible to PyTorch here; use --device cpu")
    if parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ValueError(f"{option} {name}: this machine has {torch.cuda.device_count()} CUDA devices")
    return parsed
