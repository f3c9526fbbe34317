"""Build one TensorRT engine per exported graph: DIR/<graph>.plan, listed in DIR/manifest.json.

    tools = check_engines(EngineSettings(targets=("sm86",)), sma="plugin")  # before the export
    build_engines(out, manifest, contracts(config, shapes), tools)          # after it

Each engine is parsed from its ONNX file (SMA nodes become the plugin for `--sma plugin` graphs,
which embed the plugin library), optimised for the profile of its graph contract, built ahead of
time for the chosen compute capabilities (TensorRT for RTX) or for the GPU present (full
TensorRT), and written under a temporary name before it replaces the old one. The precision is
the ONNX graph's own: networks are strongly typed (DESIGN.md section 7). Full TensorRT keeps
its tactic timings in DIR/timing.cache (TensorRT for RTX has none). An engine is built again
only when its key changes: the ONNX file, the profile, the targets, the TensorRT version or the
plugin library.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx
from tqdm.auto import tqdm

from mild_export.engine.trt_shim import (
    DEFAULT_PLUGIN_BUILD_DIR,
    PLUGIN_LIBRARY_NAME,
    REPO_ROOT,
    TensorRT,
    TensorRTError,
    plugin_library_path,
)
from mild_export.export.contracts import GraphContract
from mild_export.export.manifest import Manifest
from mild_export.ops.schema import SMA
from reference.files import atomic_write, file_sha256

log = logging.getLogger("mild")

PLUGIN_ENV = "MILD_PLUGIN_LIBRARY"
TIMING_CACHE = "timing.cache"
# without a GPU to build for: the RTX-class GPUs of the last three generations and A100
DEFAULT_RTX_TARGETS = ("sm80", "sm86", "sm89", "sm120")
KEY_VERSION = 1
BUILD_PLUGIN = (
    f"cmake -S . -B {DEFAULT_PLUGIN_BUILD_DIR.relative_to(REPO_ROOT)} "
    "-DTensorRT_INCLUDE_DIR=third_party/tensorrt/include && "
    f"cmake --build {DEFAULT_PLUGIN_BUILD_DIR.relative_to(REPO_ROOT)}"
)


class EnginesUnavailable(RuntimeError):
    """Engines cannot be built on this machine; the message says why and what to run."""


@dataclass(frozen=True)
class EngineSettings:
    targets: tuple[str, ...] | None = None  # None: the GPU present, else DEFAULT_RTX_TARGETS
    plugin: Path | None = None  # None: $MILD_PLUGIN_LIBRARY, then the default CMake build folder


@dataclass(frozen=True)
class Toolchain:
    """What check_engines found: the TensorRT module, the targets and the plugin library."""

    trt: TensorRT
    targets: tuple[str, ...]
    plugin: Path | None

    @property
    def tensorrt(self) -> str:
        return f"{'TensorRT-RTX' if self.trt.is_rtx else 'TensorRT'} {self.trt.version}"


# --- targets ---------------------------------------------------------------------------------------

CURRENT = "current"


def parse_targets(value: str) -> tuple[str, ...]:
    """'sm86,sm89' -> ('sm86', 'sm89'); also accepts 'sm_86' and '86', and 'current' (TensorRT for
    RTX's own choice for the GPU of this machine, which also answers whether it supports that GPU)."""
    targets = []
    for part in value.split(","):
        name = part.strip().lower()
        match = re.fullmatch(r"(?:sm_?)?(\d{2,3})", name)
        if match is None and name != CURRENT:
            raise ValueError(
                f"--targets {value!r}: {part.strip()!r} is not a compute capability; "
                "give a comma-separated list such as sm86,sm89 (or current)"
            )
        targets.append(CURRENT if match is None else f"sm{match.group(1)}")
    return tuple(dict.fromkeys(targets))


def present_gpu() -> str | None:
    """The compute capability of the first visible NVIDIA GPU ('sm86'), or None: from torch, else
    from nvidia-smi (a CPU build of torch does not see the GPU)."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return f"sm{major}{minor}"
    except (ImportError, RuntimeError):
        pass
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.fullmatch(r"(\d+)\.(\d+)", result.stdout.strip().split("\n")[0].strip())
    return f"sm{match.group(1)}{match.group(2)}" if result.returncode == 0 and match else None


def choose_targets(trt: TensorRT, requested: Sequence[str] | None, gpu: str | None) -> tuple[str, ...]:
    """The ahead-of-time targets to build for; () means the GPU present (full TensorRT)."""
    if not trt.is_rtx:
        if requested:
            raise ValueError(
                f"--targets {','.join(requested)}: full TensorRT {trt.version} builds for the GPU present; "
                "leave --targets out (ahead-of-time targets need TensorRT for RTX)"
            )
        if gpu is None:
            raise EnginesUnavailable(
                f"full TensorRT {trt.version} builds engines for the GPU present and there is none: "
                "build on the GPU that will run them, or install TensorRT for RTX "
                "(bash scripts/setup-tensorrt-rtx.sh), which builds ahead of time without a GPU"
            )
        return ()
    if requested:
        for target in requested:
            trt.check_target(target)
        check_current_has_a_gpu(requested, gpu)
        return tuple(requested)
    known = trt.rtx_targets()
    if gpu is not None and gpu in known:
        return (gpu,)
    if gpu is not None:
        log.warning(
            "engines: the GPU present (%s) is not a TensorRT for RTX target; building for %s",
            gpu,
            ",".join(DEFAULT_RTX_TARGETS),
        )
    return tuple(t for t in DEFAULT_RTX_TARGETS if t in known)


def check_current_has_a_gpu(requested: Sequence[str], gpu: str | None) -> None:
    """'current' builds for the GPU of this machine: without one, TensorRT for RTX fails only at
    the first engine, after the whole export, with a CUDA driver error that names no option."""
    if CURRENT in requested and gpu is None:
        raise ValueError(
            "--targets current builds for this machine's GPU and none is visible (neither PyTorch nor "
            f"nvidia-smi sees one): name the targets instead, e.g. --targets {','.join(DEFAULT_RTX_TARGETS)}"
        )


# --- the plugin library ------------------------------------------------------------------------------


def find_plugin_library(explicit: Path | None) -> Path:
    """--plugin PATH, then $MILD_PLUGIN_LIBRARY, then the default CMake build folder.

    A path the user named and that is missing is an error (ValueError); a missing default build
    means engines cannot be built here (EnginesUnavailable, with the command that builds it)."""
    for origin, value in (("--plugin", explicit), (f"${PLUGIN_ENV}", os.environ.get(PLUGIN_ENV))):
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise ValueError(
                    f"{origin} {path}: no such file; give the path of {PLUGIN_LIBRARY_NAME} "
                    f"(built by `{BUILD_PLUGIN}`)"
                )
            return path.resolve()
    path = plugin_library_path()
    if not path.is_file():
        raise EnginesUnavailable(
            f"the SMA plugin library {PLUGIN_LIBRARY_NAME} was not found (no --plugin, no ${PLUGIN_ENV}, "
            f"not in {path.parent}): build it with `{BUILD_PLUGIN}` (headers, TensorRT for RTX: "
            "`bash scripts/setup-tensorrt-rtx.sh`), or export with --sma function, whose engines need "
            "no plugin"
        )
    return path


def check_engines(settings: EngineSettings, sma: str) -> Toolchain:
    """Everything engine building needs, checked before minutes of export.

    Raises ValueError for bad options and EnginesUnavailable when this machine cannot build."""
    requested = settings.targets
    try:
        trt = TensorRT.load()
    except ImportError as err:
        raise EnginesUnavailable(str(err)) from None
    targets = choose_targets(trt, requested, present_gpu())
    plugin = find_plugin_library(settings.plugin) if sma == "plugin" else None
    tools = Toolchain(trt, targets, plugin)
    if plugin is not None:
        check_plugin_loads(tools, plugin)
    return tools


def check_plugin_loads(tools: Toolchain, plugin: Path) -> None:
    """A library TensorRT cannot load (a wrong file, a build for another TensorRT) fails here, not at
    the UNet engine after the whole export and four other engines."""
    trt = tools.trt
    try:
        trt.load_plugin_library(trt.builder(trt.logger("ERROR")), plugin)
    except TensorRTError:
        raise ValueError(
            f"{plugin}: {tools.tensorrt} cannot load it as a plugin library; give the "
            f"{PLUGIN_LIBRARY_NAME} built by `{BUILD_PLUGIN}`"
        ) from None


# --- building ----------------------------------------------------------------------------------------


def sma_node_count(model: onnx.ModelProto) -> int:
    """SMA nodes in the main graph: each must become one plugin layer."""
    return sum(n.op_type == SMA.op_type and n.domain == SMA.domain for n in model.graph.node)


def engine_key(tools: Toolchain, onnx_sha256: str, contract: GraphContract, plugin: Path | None) -> str:
    """What makes an engine: its ONNX file, profile, targets, TensorRT and plugin library (for
    the graphs that have SMA nodes and are built with the plugin)."""
    described = {
        "version": KEY_VERSION,
        "onnx": onnx_sha256,
        "profile": {k: [list(s) for s in v] for k, v in contract.profile().items()},
        "targets": list(tools.targets),
        "tensorrt": tools.tensorrt,
        "plugin": file_sha256(plugin) if plugin else None,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def _check_inputs(network: Any, contract: GraphContract, onnx_path: Path) -> None:
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    if names != set(contract.inputs):
        raise ValueError(
            f"{onnx_path} has inputs {sorted(names)} but the {contract.name} contract declares "
            f"{sorted(contract.inputs)}: export again with --force"
        )


def _timing_cache(config: Any, path: Path) -> Any:
    """The folder's timing cache, or a new one when there is none or it does not load."""
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is None and data:
        log.warning("engines: %s could not be read, starting a new timing cache", path)
        cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, False)
    return cache


def build_engine(
    tools: Toolchain, onnx_path: Path, contract: GraphContract, plugin: Path | None, cache_path: Path
) -> tuple[bytes, int]:
    """The serialized engine of one graph and its number of SMA plugin layers. With `plugin`, SMA
    nodes become plugin layers and the library is embedded in the engine; without, their function
    bodies are inlined. The timing cache at `cache_path` is read and updated where the TensorRT
    has one (full TensorRT)."""
    trt = tools.trt
    logger = trt.logger("WARNING")
    builder = trt.builder(logger)
    if plugin is not None:
        trt.load_plugin_library(builder, plugin)
    network = trt.network(builder)  # strongly typed: the ONNX types are the precision
    _parser = trt.parse_onnx(
        network, onnx_path.read_bytes(), logger, plugin_override=plugin is not None, path=onnx_path
    )
    _check_inputs(network, contract, onnx_path)
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in contract.profile().items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    trt.set_targets(config, tools.targets)
    if plugin is not None:
        config.plugins_to_serialize = [str(plugin)]
    cache = _timing_cache(config, cache_path) if trt.has_timing_cache else None
    plan = trt.build(builder, network, config, logger)
    if cache is not None:
        atomic_write(cache_path, lambda f: f.write(bytes(cache.serialize())))
    return plan, trt.count_plugin_layers(network)


def _up_to_date(entry: dict[str, Any] | None, key: str, path: Path) -> bool:
    return bool(entry) and entry.get("key") == key and path.is_file() and file_sha256(path) == entry["sha256"]


def prune_stale_engines(out: Path, manifest: Manifest, previous: dict[str, Any]) -> None:
    """Carry over the engines section of the last run, minus engines whose ONNX file changed
    (their plans are deleted: a runtime must never pair a graph with an older engine)."""
    for name, entry in previous.items():
        if name not in manifest.graphs or not isinstance(entry, dict):
            if name not in manifest.graphs:
                manifest.engines[name] = entry  # plugin_library, timing_cache, prompt_cache
            continue
        if entry.get("onnx_sha256") == manifest.graphs[name].sha256:
            manifest.engines[name] = entry
            continue
        stale = out / entry.get("file", f"{name}.plan")
        if stale.is_file():
            stale.unlink()
            log.info("engines: removed %s, built from an older %s", stale.name, manifest.graphs[name].file)


def _copy_plugin(out: Path, plugin: Path, manifest: Manifest) -> None:
    """Put the plugin library beside the engines so the runtimes load the one they were built with."""
    target = out / PLUGIN_LIBRARY_NAME
    if not target.is_file() or file_sha256(target) != file_sha256(plugin):
        with plugin.open("rb") as source:
            atomic_write(target, lambda f: shutil.copyfileobj(source, f))
    manifest.engines["plugin_library"] = PLUGIN_LIBRARY_NAME


def build_engines(
    out: Path,
    manifest: Manifest,
    graph_contracts: dict[str, GraphContract],
    tools: Toolchain,
    force: bool = False,
    progress: bool = True,
) -> dict[str, bool]:
    """Build every engine that is missing or stale; returns graph name -> built (False: reused).

    The manifest is written after each engine, so an interrupted run keeps what it finished."""
    out = Path(out)
    if tools.plugin is not None:
        _copy_plugin(out, tools.plugin, manifest)
    built = {}
    bar = tqdm(list(manifest.graphs), desc="engines", unit="engine", disable=not progress)
    for name in bar:
        onnx_path = manifest.verify(out, name)
        sma_nodes = sma_node_count(onnx.load(str(onnx_path), load_external_data=False))
        plugin = tools.plugin if sma_nodes else None
        key = engine_key(tools, manifest.graphs[name].sha256, graph_contracts[name], plugin)
        path = out / f"{name}.plan"
        if not force and _up_to_date(manifest.engines.get(name), key, path):
            bar.set_postfix_str(f"{name}: up to date")
            log.info("engines: %s is up to date", path.name)
            built[name] = False
            continue
        bar.set_postfix_str(f"{name}: building")
        entry = _build(tools, manifest, name, graph_contracts[name], plugin, sma_nodes, out)
        manifest.engines[name] = entry | {"key": key}
        if tools.trt.has_timing_cache:
            manifest.engines["timing_cache"] = TIMING_CACHE
        manifest.write(out)
        built[name] = True
        log.info(
            "engines: built %s in %.1f s (%d plugin layers, %s)",
            path.name,
            entry["build_seconds"],
            entry["plugin_layers"],
            ",".join(tools.targets) or "the GPU present",
        )
    manifest.write(out)
    return built


def _build(
    tools: Toolchain,
    manifest: Manifest,
    name: str,
    contract: GraphContract,
    plugin: Path | None,
    sma_nodes: int,
    out: Path,
) -> dict[str, Any]:
    """Build and write DIR/<name>.plan; returns its manifest entry (without the key)."""
    onnx_path = out / manifest.graphs[name].file
    start = time.perf_counter()
    plan, plugin_layers = build_engine(tools, onnx_path, contract, plugin, out / TIMING_CACHE)
    seconds = time.perf_counter() - start
    if plugin is not None and plugin_layers != sma_nodes:
        raise ValueError(
            f"{name}: {onnx_path.name} has {sma_nodes} SMA nodes but the engine has {plugin_layers} "
            f"plugin layers: is {plugin} the library for this graph's SMA version?"
        )
    path = atomic_write(out / f"{name}.plan", lambda f: f.write(plan))
    return {
        "file": path.name,
        "sha256": file_sha256(path),
        "onnx_sha256": manifest.graphs[name].sha256,
        "tensorrt": tools.tensorrt,
        "targets": list(tools.targets),
        "precision": manifest.precision,
        "plugin_layers": plugin_layers,
        "symbols": {k: asdict(v) for k, v in contract.symbols.items()},
        "build_seconds": round(seconds, 1),
    }
