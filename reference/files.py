"""Files written so that no reader ever sees half of one, and checked by their hash."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from safetensors.torch import save_file
from torch import Tensor


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call `write(file)` on a temporary file beside `path`, fsync it, then rename it over `path`:
    an interrupted run leaves the old file intact. The temporary file gets the usual permissions
    (0o666 less the umask), not mkstemp's private 0o600."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def save_tensors(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None) -> Path:
    """safetensors' save_file with the usual permissions (0o666 less the umask): safetensors 0.8
    writes 0o600, so a merged model or checkpoint shared on a machine could not be read by others."""
    save_file(tensors, str(path), metadata=metadata)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
    return Path(path)


def file_sha256(path: Path) -> str:
    """The file's sha256, read a MiB at a time (checkpoints and engines are gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
