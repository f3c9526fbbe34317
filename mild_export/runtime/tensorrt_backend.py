"""TensorRT behind the one backend interface: the engines of a mild-export folder (DIR/<graph>.plan).

    backend = TensorRTBackend(DIR, device="cuda", cuda_graph=True)
    ErasePipeline(backend).erase(image, masks)

Works with full TensorRT (module `tensorrt`, 10.x/11.x) and TensorRT for RTX through the shim
(`mild_export.engine.trt_shim`). Each engine is checked against the manifest (sha256, the
TensorRT that built it) before it is deserialized; the SMA plugin library is embedded in the
engines that use it, so the runtime allows engine host code (the hash check is what vouches for
the file). Arrays cross as torch CUDA tensors: fp32 in, converted to each engine's I/O types at
the boundary, fp32 out, as the ONNX Runtime backend does. Text encodings are cached by token ids
(one entry per distinct prompt batch). With TensorRT for RTX the kernels its JIT compiles for this
GPU are kept in DIR/rtx-jit-cache-<gpu>.bin (`rtx_runtime`), written after each call that met new
shapes, so a later process starts without compiling them again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mild_export.engine.trt_shim import TensorRT
from mild_export.export.contracts import ExportShapes, contracts
from mild_export.export.manifest import Manifest
from mild_export.runtime.prompt_cache import PromptCache
from mild_export.runtime.rtx_runtime import JitCache, jit_cache_name
from mild_export.runtime.trt_engine import EngineRunner, logged_errors
from reference.config import ModelConfig
from reference.files import file_sha256
from reference.text import load_tokenizers

log = logging.getLogger("mild")

NO_GPU = (
    "--backend tensorrt needs an NVIDIA GPU: none visible (torch.cuda.is_available() is False); "
    "use --backend onnxruntime"
)
RTX_MODULES = ("tensorrt_rtx", "tensorrt_rtx_bindings")
FULL_MODULES = ("tensorrt",)


class TensorRTUnavailable(ValueError):
    """The TensorRT backend cannot run here or on this folder; the message says why and the fix."""


def require_gpu(device: str | torch.device) -> torch.device:
    """The CUDA device to run on, or TensorRTUnavailable naming what is missing."""
    if not torch.cuda.is_available():
        raise TensorRTUnavailable(NO_GPU)
    device = torch.device(device)
    if device.type != "cuda":
        raise TensorRTUnavailable(
            f"--backend tensorrt runs on an NVIDIA GPU, not on {device}: give --device cuda"
        )
    return torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)


def engine_files(folder: Path, manifest: Manifest) -> dict[str, Path]:
    """Each graph's .plan file, checked against the manifest (present, built from this ONNX file,
    same sha256)."""
    rerun = f"run mild-export --out {folder} again with TensorRT installed"
    entries = {n: manifest.engines.get(n) for n in manifest.graphs}
    entries = {n: e for n, e in entries.items() if isinstance(e, dict) and "file" in e}
    if not entries or not any((folder / e["file"]).is_file() for e in entries.values()):
        raise TensorRTUnavailable(
            f"{folder} has no TensorRT engines (no .plan files): run mild-export --out {folder} with "
            "TensorRT installed (it builds DIR/<graph>.plan after the ONNX export)"
        )
    missing = [n for n in manifest.graphs if n not in entries]
    if missing:
        raise TensorRTUnavailable(f"{folder} has no engine for {', '.join(missing)}: {rerun}")
    paths = {}
    for name, entry in entries.items():
        path = folder / entry["file"]
        if not path.is_file():
            raise TensorRTUnavailable(f"{path} is missing: {rerun}")
        if entry.get("onnx_sha256") != manifest.graphs[name].sha256:
            raise TensorRTUnavailable(f"{path} was built from an older {manifest.graphs[name].file}: {rerun}")
        if file_sha256(path) != entry["sha256"]:
            raise TensorRTUnavailable(
                f"{path} does not match its manifest hash (edited or truncated): {rerun} --force"
            )
        paths[name] = path
    return paths


def tensorrt_name(trt: TensorRT) -> str:
    """How the manifest names a TensorRT: 'TensorRT-RTX 1.7.1.116', 'TensorRT 10.13.0'."""
    return f"{'TensorRT-RTX' if trt.is_rtx else 'TensorRT'} {trt.version}"


def load_tensorrt(built_by: str) -> TensorRT:
    """The TensorRT module of the kind that built the engines, else whichever is installed."""
    modules = RTX_MODULES if built_by.startswith("TensorRT-RTX") else FULL_MODULES
    for name in modules:
        try:
            return TensorRT.load(name)
        except ImportError:
            continue
    try:
        return TensorRT.load()
    except ImportError as err:
        raise TensorRTUnavailable(f"--backend tensorrt: {err}") from None


def present_target() -> str:
    major, minor = torch.cuda.get_device_capability()
    return f"sm{major}{minor}"


def export_command(folder: Path, manifest: Manifest, targets: str = "") -> str:
    """The mild-export command line that made `folder`, for rebuild hints."""
    shapes = manifest.shapes
    parts = ["mild-export", "--model", manifest.model]
    if manifest.precision != "fp32":
        parts.append(f"--{manifest.precision}")
    parts += [f"--resolution={r}" for r in shapes["resolutions"]]
    parts += ["--max-instances", str(shapes["max_instances"])]
    parts += ["--guidance"] if shapes.get("guidance") else []
    parts += ["--sma", manifest.sma, "--out", str(folder)]
    parts += ["--targets", targets] if targets else []
    return " ".join(parts)


def rebuild_hint(trt: TensorRT, folder: Path, manifest: Manifest) -> str:
    """What to run so that the engines load here: build them for this GPU and this TensorRT."""
    gpu = present_target()
    if not trt.is_rtx:
        return (
            f"rebuild them on this GPU with {tensorrt_name(trt)}: {export_command(folder, manifest)} --force"
        )
    if gpu not in trt.rtx_targets():
        return (
            f"this GPU ({gpu}) is not a TensorRT for RTX target; install full TensorRT "
            f"(pip install tensorrt) and rebuild on this GPU: {export_command(folder, manifest)} --force"
        )
    return f"rebuild them for this GPU: {export_command(folder, manifest, gpu)} --force"


def engine_diagnosis(trt: TensorRT, runtime: Any, data: bytes) -> str:
    """TensorRT's own verdict on a plan that did not load, where it has one (get_engine_validity)."""
    check = getattr(runtime, "get_engine_validity", None)
    if check is None:
        return ""
    try:
        validity, diagnostics = check(data)
    except (RuntimeError, TypeError):
        return ""
    reasons = [
        name.lower().replace("_", " ")
        for name, flag in trt.module.EngineInvalidityDiagnostics.__members__.items()
        if int(diagnostics) & int(flag)
    ]
    return f" (TensorRT: {getattr(validity, 'name', validity)}{': ' + ', '.join(reasons) if reasons else ''})"


class TensorRTBackend:
    def __init__(
        self,
        folder: Path,
        device: str | torch.device = "cuda",
        cuda_graph: bool = False,
        jit_cache: bool = True,
    ):
        self.device = require_gpu(device)
        folder = Path(folder)
        self.folder = folder
        self.manifest = Manifest.read(folder)
        self.config = ModelConfig.from_dict(self.manifest.config)
        self.contracts = contracts(self.config, ExportShapes(**_shapes(self.manifest.shapes)))
        plans = engine_files(folder, self.manifest)
        self.trt = load_tensorrt(self.manifest.engines[next(iter(plans))].get("tensorrt", ""))
        self.logger = self.trt.logger("WARNING")
        self.jit_cache = None
        if jit_cache and self.trt.is_rtx:
            self.jit_cache = JitCache(folder / jit_cache_name(torch.cuda.get_device_name(self.device)))
        with torch.cuda.device(self.device):
            self.stream = torch.cuda.Stream(self.device)
            self.runtime = self.trt.module.Runtime(self.logger)
            if hasattr(self.runtime, "engine_host_code_allowed"):  # the embedded SMA plugin library
                self.runtime.engine_host_code_allowed = True
            self.engines = {name: self._deserialize(name, path) for name, path in plans.items()}
            self.runners = {
                name: EngineRunner(
                    self.trt,
                    engine,
                    self.contracts[name],
                    self.stream,
                    self.logger,
                    cuda_graph=cuda_graph and name == "unet",
                    jit_cache=self.jit_cache,
                )
                for name, engine in self.engines.items()
            }
        self.tokenizers = load_tokenizers(self.config.text, folder)
        self.text_cache = PromptCache()
        log.info("tensorrt: %d engines from %s on %s", len(self.engines), folder, tensorrt_name(self.trt))

    def _deserialize(self, name: str, path: Path) -> Any:
        built = self.manifest.engines[name].get("tensorrt", "an unknown TensorRT")
        here = tensorrt_name(self.trt)
        if built != here:
            raise TensorRTUnavailable(
                f"{path} was built by {built}, this is {here}: an engine loads only in the TensorRT that "
                f"built it; {rebuild_hint(self.trt, self.folder, self.manifest)}"
            )
        data = path.read_bytes()
        first = len(self.logger.records)
        engine = self.runtime.deserialize_cuda_engine(data)
        if engine is None:
            targets = ",".join(self.manifest.engines[name].get("targets") or []) or "the GPU it was built on"
            errors = logged_errors(self.logger, first)
            raise TensorRTUnavailable(
                f"{path} does not load on this GPU ({torch.cuda.get_device_name(self.device)}, "
                f"{present_target()}): it was built by {built} for {targets}"
                f"{engine_diagnosis(self.trt, self.runtime, data)}; "
                f"{rebuild_hint(self.trt, self.folder, self.manifest)}"
                + ("\nTensorRT said: " + " | ".join(errors) if errors else "")
            )
        return engine

    def tokenize(self, prompts: list[str]) -> dict[str, Tensor]:
        names = self.contracts["text_encoder"].spec.inputs
        return {name: tok(prompts) for name, tok in zip(names, self.tokenizers, strict=True)}

    def run(self, graph: str, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if graph not in self.runners:
            raise ValueError(f"unknown graph {graph!r}: {self.folder} has {', '.join(self.runners)}")
        args = {name: inputs[name] for name in self.contracts[graph].inputs}
        if graph == "text_encoder":
            return self.text_cache.encodings(args, lambda: self._execute(graph, args))
        return self._execute(graph, args)

    def _execute(self, graph: str, args: Mapping[str, Tensor]) -> dict[str, Tensor]:
        runner = self.runners[graph]
        with torch.cuda.device(self.device):
            buffers = runner(args)
            if runner.new_shapes and self.jit_cache is not None:  # EAGER: compiled in that call
                self.jit_cache.save()
            # fresh fp32 tensors: the engine's buffers are reused by its next call
            return {
                name: buffers[name].to(torch.float32, copy=True)
                for name in self.contracts[graph].spec.outputs
            }


def _shapes(raw: dict) -> dict:
    return {**raw, "resolutions": tuple(raw["resolutions"])}
