"""Checkpoints: written atomically, verified when read.

    RUN_DIR/checkpoints/step-00000040/
        trainable.safetensors   the MILD parameters (LoRA sets and scales, SMA, HMG, E_trans)
        state.pt                optimizer, LR scheduler, RNG states, data order, step
        meta.json               step, model, configurations, sha256 of the two files above

A checkpoint is assembled in a hidden temporary folder beside its final name and renamed into
place once every file is flushed, so killing training at any moment leaves either the complete
checkpoint or none (a stale temporary folder is ignored and removed by the next save).
meta.json is written last and carries the hashes, so a truncated or edited file is named on load.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from reference.config import PRESETS
from reference.files import file_sha256, save_tensors

CHECKPOINTS = "checkpoints"
WEIGHTS = "trainable.safetensors"
STATE = "state.pt"
META = "meta.json"
PREFIX = "step-"
FORMAT = 1


@dataclass
class Checkpoint:
    path: Path
    meta: dict[str, Any]  # step, model, model_config, train_config, hashes
    weights: dict[str, Tensor]
    state: dict[str, Any]  # optimizer, scheduler, rng, data

    @property
    def step(self) -> int:
        return int(self.meta["step"])


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    run_dir: Path,
    step: int,
    weights: dict[str, Tensor],
    state: dict[str, Any],
    meta: dict[str, Any],
    keep: int,
) -> Path:
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_tensors({k: v.detach().contiguous().cpu() for k, v in weights.items()}, tmp / WEIGHTS)
    torch.save(state, tmp / STATE)
    hashes = {name: file_sha256(tmp / name) for name in (WEIGHTS, STATE)}
    (tmp / META).write_text(json.dumps({**meta, "format": FORMAT, "step": step, "sha256": hashes}, indent=2))
    for name in (WEIGHTS, STATE, META):
        _fsync(tmp / name)
    if final.exists():  # the same step saved again (e.g. after a resume): replace it whole
        shutil.rmtree(final)
    tmp.rename(final)
    _fsync(root)
    _prune(root, keep)
    return final


def _prune(root: Path, keep: int) -> None:
    for stale in root.glob(f".{PREFIX}*.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if keep > 0:
        for old in list_checkpoints(root.parent)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def resolve(path: Path) -> Path:
    """A run folder (-> its latest checkpoint) or a checkpoint folder itself."""
    path = Path(path)
    if (path / META).is_file() or path.name.startswith(PREFIX):
        return path
    found = list_checkpoints(path)
    if not found:
        raise ValueError(
            f"{path} holds no checkpoint (no {CHECKPOINTS}/{PREFIX}*/): train with mild-train first"
        )
    return found[-1]


def _fallback(broken: Path) -> str:
    """The fix for a broken checkpoint: the run's checkpoint before it, which nothing picks on its
    own (--resume takes the latest), so the broken one has to go."""
    names = [p.name for p in list_checkpoints(broken.parent.parent)]
    if broken.name not in names:
        return "use another checkpoint"
    position = names.index(broken.name)
    if position == 0:
        return (
            f"the run has no checkpoint before it: delete {broken} and start the run again without --resume"
        )
    earlier = broken.parent / names[position - 1]
    return (
        f"delete the folder {broken} to resume from the checkpoint before it, {earlier} "
        f"(mild-merge --checkpoint {earlier} merges that one as it is)"
    )


def load_meta(path: Path) -> dict[str, Any]:
    meta_path = Path(path) / META
    try:
        meta = json.loads(meta_path.read_text())
        int(meta["step"])
        dict(meta["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"checkpoint file {meta_path} is missing or corrupt ({err}): {_fallback(path)}"
        ) from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path} has format {meta.get('format')}, this version reads {FORMAT}")
    return meta


def verify_checkpoint(path: Path, with_state: bool = True) -> tuple[Path, dict[str, Any]]:
    """(checkpoint folder, meta) after checking every file against meta.json's sha256."""
    path = resolve(path)
    meta = load_meta(path)
    for name in (WEIGHTS, STATE) if with_state else (WEIGHTS,):
        file = path / name
        if not file.is_file():
            raise ValueError(f"checkpoint file {file} is missing: {_fallback(path)}")
        if file_sha256(file) != meta["sha256"].get(name):
            raise ValueError(
                f"checkpoint file {file} is corrupt (its sha256 differs from {path / META}): "
                f"{_fallback(path)}"
            )
    return path, meta


def load_checkpoint(path: Path, with_state: bool = True) -> Checkpoint:
    """Verify hashes, then read; every failure names the file at fault."""
    path, meta = verify_checkpoint(path, with_state)
    try:
        weights = load_file(str(path / WEIGHTS))
        state = torch.load(path / STATE, weights_only=True) if with_state else {}
    except (SafetensorError, OSError, RuntimeError, EOFError) as err:
        raise ValueError(f"checkpoint {path} could not be read ({err}): {_fallback(path)}") from None
    return Checkpoint(path, meta, weights, state)


def base_model(checkpoint: Path, meta: Mapping[str, Any]) -> str:
    """The model a run trains, as its checkpoints record it: a preset's name or a folder. Runs record
    folders as absolute paths; an older run's relative one holds only from the folder it started in,
    which the error says rather than failing later as an unknown model."""
    model = str(meta["model"])
    where = "" if Path(model).is_absolute() else " (a relative path, from the folder the run started in)"
    if model not in PRESETS and not Path(model).is_dir():
        raise ValueError(
            f"checkpoint {checkpoint} was trained from model folder {model}, which is not there{where}: "
            "run from where it resolves, or put the base model back at that path"
        )
    return model


def check_weights(checkpoint: Checkpoint, expected: Mapping[str, Tensor]) -> None:
    """The checkpoint's tensors are the model's, by name and shape: a model folder replaced since the
    run started (or an edited meta.json) fails naming the checkpoint, not inside a tensor copy."""
    model = checkpoint.meta.get("model")
    fix = "it was trained with another model or LoRA configuration"
    names, stored = set(expected), set(checkpoint.weights)
    if names != stored:
        example = sorted(names - stored)[:1] or sorted(stored - names)[:1]
        raise ValueError(f"checkpoint {checkpoint.path} does not match model {model!r} ({example[0]}): {fix}")
    for name, tensor in expected.items():
        got = tuple(checkpoint.weights[name].shape)
        if got != tuple(tensor.shape):
            raise ValueError(
                f"checkpoint {checkpoint.path} does not match model {model!r} ({name} is {list(got)} there, "
                f"{list(tensor.shape)} in the model): {fix}"
            )
