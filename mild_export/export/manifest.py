"""DIR/manifest.json: what an export folder holds, how it was made, and how to check it.

Export, engine building and the runtimes read the same file. Each graph entry carries a key
(a hash of the weights, contract, precision and tool versions that made it) so that a second
export with the same inputs reuses the files, and the sha256 of its file so that a truncated or
edited file is not mistaken for a good one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mild_export.export.contracts import GraphContract
from reference.config import MERGED_KIND
from reference.files import atomic_write, file_sha256

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FOLDER_MARK = ".mild-export"
TOOLS = ("mild-export", "torch", "diffusers", "onnx", "onnxruntime", "onnxscript")


def tool_versions() -> dict[str, str]:
    """Versions of the tools that shape the files; TensorRT under whatever wheel name installed it
    (tensorrt, tensorrt-cu12, tensorrt-rtx-cu13-bindings, ...)."""
    versions = {}
    for name in TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith("tensorrt") and not name.endswith("-libs"):
            versions[name] = dist.version
    return versions


def weights_sha256(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass
class GraphEntry:
    file: str
    sha256: str
    key: str
    inputs: dict[str, list[int | str]]
    outputs: list[str]
    symbols: dict[str, dict[str, int]]
    profile: dict[str, list[list[int]]]


@dataclass
class Manifest:
    model: str
    model_sha256: str
    config: dict[str, Any]
    precision: str
    sma: str
    opset: int
    shapes: dict[str, Any]
    kept_in_fp32: list[str]
    # how the UNet holds the bg Q/K/V set (mild_export.export.branch_weights); older folders: whole
    branch_weights: dict[str, Any] = field(default_factory=lambda: {"form": "full"})
    graphs: dict[str, GraphEntry] = field(default_factory=dict)
    engines: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=tool_versions)
    format: int = FORMAT_VERSION

    def write(self, folder: Path) -> Path:
        text = json.dumps(asdict(self), indent=2) + "\n"
        return atomic_write(Path(folder) / MANIFEST, lambda f: f.write(text.encode()))

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise ValueError(
                f"{path} not found: {folder} is not a mild-export output folder (run mild-export)"
            )
        try:
            raw = json.loads(path.read_text())
        except ValueError as err:
            raise ValueError(f"{path} is unreadable ({err}): export again with --force") from None
        if isinstance(raw, dict) and raw.get("kind") == MERGED_KIND:  # else read as a broken export
            raise ValueError(
                f"{folder} is a mild-merge model folder, not a mild-export output: run "
                f"mild-export --model {folder} --out DIR and give DIR"
            )
        try:
            if raw.get("format") != FORMAT_VERSION:
                raise ValueError(f"format {raw.get('format')} (this mild-export reads {FORMAT_VERSION})")
            raw["graphs"] = {k: GraphEntry(**v) for k, v in raw["graphs"].items()}
            return cls(**raw)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise ValueError(f"{path} is unreadable ({err}): export again with --force") from None

    def verify(self, folder: Path, name: str) -> Path:
        """The graph's file, after checking it is the one the manifest describes."""
        entry = self.graphs[name]
        path = Path(folder) / entry.file
        if not path.is_file():
            raise ValueError(f"{path} is missing: export again with --force")
        if file_sha256(path) != entry.sha256:
            raise ValueError(f"{path} does not match its manifest hash (edited or truncated): export again")
        return path


def claim_folder(folder: Path) -> None:
    """Mark `folder` as an export's before its first file: the manifest comes last, so without the
    mark a rerun after an interrupted first export could not tell its own files from a user's."""
    mark = "mild-export writes this folder: its files are replaced by exports\n"
    (Path(folder) / FOLDER_MARK).write_text(mark)


def is_export_folder(folder: Path) -> bool:
    """Marked, or holding an export's manifest (folders from before the mark): a mild-merge folder's
    manifest.json is no export's, and its weights are not to be written over."""
    if (Path(folder) / FOLDER_MARK).is_file():
        return True
    try:
        Manifest.read(folder)
    except ValueError:
        return False
    return True


def graph_entry(contract: GraphContract, file: str, sha256: str, key: str) -> GraphEntry:
    return GraphEntry(
        file=file,
        sha256=sha256,
        key=key,
        inputs={k: list(v) for k, v in contract.inputs.items()},
        outputs=list(contract.spec.outputs),
        symbols={k: asdict(v) for k, v in contract.symbols.items()},
        profile={k: [list(s) for s in v] for k, v in contract.profile().items()},
    )


def graph_key(weights: str, contract: GraphContract, **settings: Any) -> str:
    """What makes a graph file: its weights, its contract, the settings and the tools."""
    described = {
        "weights": weights,
        "inputs": {k: list(v) for k, v in contract.inputs.items()},
        "symbols": {k: asdict(v) for k, v in contract.symbols.items()},
        "settings": settings,
        "tools": tool_versions(),
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()
