"""Text encodings written at export time, for runtimes that cannot tokenize a prompt.

The C runtime carries only the tiny models' byte tokenizer: with a CLIP tokenizer (SD1.5, SDXL) it
reads every prompt's encodings, the empty prompt's included (the default prompt, and guidance's
unconditional row), from DIR/prompts.f32 through the manifest's `engines.prompt_cache`. They are
the PyTorch text encoder's, in float32, computed before the export casts the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mild_export.export.manifest import Manifest
from reference.files import atomic_write
from reference.model import MildModel

PROMPT_FILE = "prompts.f32"


def cached_prompts(extra: Sequence[str] | None) -> list[str]:
    """The empty prompt, then `extra` in order, each once."""
    return list(dict.fromkeys(["", *(extra or [])]))


def encode_prompts(model: MildModel, prompts: Sequence[str]) -> dict[str, dict[str, Tensor]]:
    """Each prompt's text-encoder outputs (prompt_embeds [1, T, C], with SDXL pooled_prompt_embeds
    [1, P]) as float32 on the CPU."""
    out = {}
    device = next(model.text.parameters()).device
    with torch.no_grad():
        for prompt in prompts:
            ids = {name: t.to(device) for name, t in model.text.tokenize([prompt]).items()}
            out[prompt] = {name: t.float().cpu() for name, t in model.text(**ids).items()}
    return out


def write_prompt_cache(out: Path, encodings: dict[str, dict[str, Tensor]], manifest: Manifest) -> None:
    """DIR/prompts.f32 (the tensors back to back) and its entry in `manifest.engines`, whose
    offsets count float32 values from the file's start."""
    entries, chunks, offset = [], [], 0
    for prompt, tensors in encodings.items():
        entry: dict = {"prompt": prompt, "tensors": {}}
        for name, tensor in tensors.items():
            entry["tensors"][name] = {"shape": list(tensor.shape), "offset": offset}
            chunks.append(tensor.numpy().astype(np.float32).ravel())
            offset += tensor.numel()
        entries.append(entry)
    data = np.concatenate(chunks).tobytes()
    atomic_write(out / PROMPT_FILE, lambda f: f.write(data))
    manifest.engines["prompt_cache"] = {"file": PROMPT_FILE, "dtype": "float32", "entries": entries}
