"""Checks of command-line values that several commands share, made before any work starts: a
typo in an output path or a device should cost a second, not a model load and a run's worth of
compute, and leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import torch


def output_folder(path: Path, option: str = "--out") -> None:
    """A folder to write into: new, or an existing folder (made when the first file is written). A
    new one must be possible to make: its nearest existing parent is a folder, not a file."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is a file: choose a folder")
    parent = next(p for p in path.absolute().parents if p.exists())
    if not parent.is_dir():
        raise ValueError(
            f"{option} {path}: {parent} is a file, so no folder can be made there: choose another"
        )


def output_file(path: Path | None, option: str, example: str) -> None:
    """A file to write: not an existing folder (`example`: a file name to suggest inside it)."""
    if path is not None and path.is_dir():
        raise ValueError(f"{option} {path} is a folder: give a file name, e.g. {path / example}")


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
