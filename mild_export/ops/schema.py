"""The SMA op's one definition (name, domain, version, tolerances), read from sma_schema.json.

The torch custom op, the ONNX node and its function, and the TensorRT plugin (through CMake,
which reads the same JSON) all take their names from this file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SCHEMA_FILE = Path(__file__).with_name("sma_schema.json")


@dataclass(frozen=True)
class Tolerance:
    factor: float  # allowed multiple of PyTorch's own error in the same precision
    atol: float


@dataclass(frozen=True)
class OpSchema:
    op_type: str
    domain: str
    version: int
    plugin_version: str
    plugin_namespace: str
    inputs: tuple[str, ...]
    tolerances: dict[str, Tolerance]

    @classmethod
    def load(cls, path: Path = SCHEMA_FILE) -> OpSchema:
        raw = json.loads(path.read_text())
        return cls(
            op_type=raw["op_type"],
            domain=raw["domain"],
            version=int(raw["version"]),
            plugin_version=raw["plugin_version"],
            plugin_namespace=raw["plugin_namespace"],
            inputs=tuple(i["name"] for i in raw["inputs"]),
            tolerances={k: Tolerance(**v) for k, v in raw["tolerances"].items() if k != "comment"},
        )


SMA = OpSchema.load()
