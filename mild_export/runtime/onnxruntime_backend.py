"""ONNX Runtime behind the one backend interface: the exported graphs of a mild-export folder.

CPU everywhere; the CUDA provider when onnxruntime-gpu is installed. Arrays cross as numpy in
each graph input's own type, so the same loop drives fp32, fp16 and bf16 exports.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.capi.onnxruntime_pybind11_state import NotImplemented as OrtNotImplemented
from torch import Tensor

from mild_export.export.contracts import ExportShapes, contracts
from mild_export.export.manifest import Manifest
from reference.config import ModelConfig
from reference.text import load_tokenizers

ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
}


def default_providers() -> list[str]:
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def open_session(path: Path, precision: str, providers: list[str]) -> ort.InferenceSession:
    """A session for one graph; a graph the providers have no kernels for is a ValueError naming
    the graph and the fix (the CPU provider has almost no bfloat16 kernels)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except OrtNotImplemented as err:
        raise ValueError(
            f"{path.name} ({precision}) cannot run on ONNX Runtime ({', '.join(providers)}): {err}. "
            "Run it on TensorRT (--backend tensorrt) or export with --fp16 or in fp32 for ONNX Runtime"
        ) from None


class OnnxRuntimeBackend:
    def __init__(self, folder: Path, providers: list[str] | None = None, device: str = "cpu"):
        folder = Path(folder)
        self.manifest = Manifest.read(folder)
        self.config = ModelConfig.from_dict(self.manifest.config)
        self.device = torch.device(device)
        self.contracts = contracts(self.config, ExportShapes(**_shapes(self.manifest.shapes)))
        providers = providers or default_providers()
        self.sessions = {
            name: open_session(self.manifest.verify(folder, name), self.manifest.precision, providers)
            for name in self.manifest.graphs
        }
        self.input_types = {
            name: {i.name: ORT_TYPES.get(i.type) for i in s.get_inputs()} for name, s in self.sessions.items()
        }
        self.tokenizers = load_tokenizers(self.config.text, folder)

    def tokenize(self, prompts: list[str]) -> dict[str, Tensor]:
        names = self.contracts["text_encoder"].spec.inputs
        return {name: tok(prompts) for name, tok in zip(names, self.tokenizers, strict=True)}

    def run(self, graph: str, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        contract, types = self.contracts[graph], self.input_types[graph]
        contract.check({name: tuple(inputs[name].shape) for name in contract.inputs})
        feeds = {name: _to_numpy(inputs[name], types[name]) for name in contract.inputs}
        outputs = self.sessions[graph].run(list(contract.spec.outputs), feeds)
        return {
            name: torch.from_numpy(np.asarray(out, dtype=np.float32)).to(self.device)
            for name, out in zip(contract.spec.outputs, outputs, strict=True)
        }


def _to_numpy(t: Tensor, dtype: type | None) -> np.ndarray:
    if dtype is None:  # bf16: numpy has no such type, ORT takes it through ml_dtypes
        import ml_dtypes

        return t.detach().float().cpu().numpy().astype(ml_dtypes.bfloat16)
    return t.detach().cpu().numpy().astype(dtype)


def _shapes(raw: dict) -> dict:
    return {**raw, "resolutions": tuple(raw["resolutions"])}
