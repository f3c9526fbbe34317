"""One small shim over full TensorRT (module `tensorrt`, 10.x/11.x) and TensorRT for RTX.

Everything that differs between the two lives here (DESIGN.md section 7): the module name, how
ahead-of-time targets are chosen (RTX only), that RTX networks are always strongly typed. The rest
of the toolchain talks to `TensorRT` and never imports a TensorRT module itself.

    trt = TensorRT.load()
    logger = trt.logger()
    builder = trt.builder(logger)
    trt.load_plugin_library(builder, plugin_library_path())
    network = trt.network(builder)
    ...
    plan = trt.build(builder, network, config, logger)
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from mild_export.ops.schema import SMA, OpSchema

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN_LIBRARY_NAME = "libmild_plugins.so"
# where `cmake -S . -B build/plugins` puts the library (tests and the CLI default)
DEFAULT_PLUGIN_BUILD_DIR = REPO_ROOT / "build" / "plugins"

# module name -> is TensorRT for RTX; tried in this order unless one is asked for
_MODULES = {"tensorrt_rtx": True, "tensorrt_rtx_bindings": True, "tensorrt": False}


class TensorRTError(RuntimeError):
    """A TensorRT call failed; the message carries TensorRT's own errors."""


def plugin_library_path(build_dir: Path = DEFAULT_PLUGIN_BUILD_DIR) -> Path:
    """The plugin library inside a CMake build folder (it sits in plugins/sma/ there)."""
    return Path(build_dir) / "plugins" / "sma" / PLUGIN_LIBRARY_NAME


@dataclass
class LogRecord:
    severity: str  # "INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"
    message: str


@dataclass
class TensorRT:
    """The loaded TensorRT module and what kind it is."""

    module: ModuleType
    is_rtx: bool
    _logger_class: type | None = field(default=None, repr=False)

    @classmethod
    def load(cls, prefer: str | None = None) -> TensorRT:
        """Import TensorRT for RTX or full TensorRT; `prefer` names one module ("tensorrt", ...)."""
        names = [prefer] if prefer else list(_MODULES)
        errors = []
        for name in names:
            try:
                module = importlib.import_module(name)
            except ImportError as exc:
                errors.append(f"{name}: {exc}")
                continue
            return cls(module, _MODULES.get(name, "rtx" in name))
        raise ImportError(
            "no TensorRT Python module found (" + "; ".join(errors) + "). Install TensorRT for RTX with "
            "`bash scripts/setup-tensorrt-rtx.sh`, or full TensorRT with `pip install tensorrt`."
        )

    @property
    def version(self) -> str:
        return self.module.__version__

    @property
    def has_timing_cache(self) -> bool:
        """Full TensorRT times tactics and can keep the timings; TensorRT for RTX picks kernels at
        run time, and its timing-cache calls are deprecated no-ops."""
        return not self.is_rtx

    # --- logging -------------------------------------------------------------------------------
    def logger(self, min_severity: str = "INFO") -> Any:
        """An ILogger that keeps every record (`.records`) so callers can show or assert on them."""
        if self._logger_class is None:
            self._logger_class = _make_logger_class(self.module)
        return self._logger_class(getattr(self.module.ILogger.Severity, min_severity))

    # --- plugins -------------------------------------------------------------------------------
    def load_plugin_library(self, builder: Any, path: Path) -> Any:
        """Load our plugin library into the builder's registry; returns TensorRT's handle."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"plugin library {path} does not exist: build it with "
                f"`cmake -S . -B {DEFAULT_PLUGIN_BUILD_DIR.relative_to(REPO_ROOT)} && cmake --build ...`"
            )
        handle = builder.get_plugin_registry().load_library(str(path))
        if handle is None:
            raise TensorRTError(f"TensorRT could not load the plugin library {path}")
        return handle

    def plugin_creator(self, builder: Any, schema: OpSchema = SMA) -> Any:
        """The creator of an op's plugin (name, version and namespace from its schema)."""
        creator = builder.get_plugin_registry().get_creator(
            schema.op_type, schema.plugin_version, schema.plugin_namespace
        )
        if creator is None:
            raise TensorRTError(
                f"no plugin creator {schema.op_type!r} version {schema.plugin_version!r} in namespace "
                f"{schema.plugin_namespace!r}: load {PLUGIN_LIBRARY_NAME} first"
            )
        return creator

    def add_plugin_layer(
        self, network: Any, creator: Any, inputs: Sequence[Any], name: str, fields: Sequence[Any] = ()
    ) -> Any:
        """Create an IPluginV3 from `creator` and add it to `network` as a layer called `name`."""
        trt = self.module
        if not hasattr(network, "add_plugin_v3"):
            raise TensorRTError(
                f"TensorRT {self.version} has no add_plugin_v3 in its Python API (TensorRT for RTX): "
                "plugin layers come from ONNX nodes through parse_onnx(..., plugin_override=True)"
            )
        plugin = creator.create_plugin(name, trt.PluginFieldCollection(list(fields)), trt.TensorRTPhase.BUILD)
        if plugin is None:
            raise TensorRTError(f"plugin creator {creator.name!r} returned no plugin for layer {name!r}")
        layer = network.add_plugin_v3(list(inputs), [], plugin)
        layer.name = name
        return layer

    def count_plugin_layers(self, network: Any, op_type: str = SMA.op_type) -> int:
        """Plugin layers of one op type in a network definition."""
        count = 0
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.type != self.module.LayerType.PLUGIN_V3:
                continue
            layer.__class__ = self.module.IPluginV3Layer  # the bindings' way to downcast a layer
            core = layer.plugin.get_capability_interface(self.module.PluginCapabilityType.CORE)
            count += int(core is not None and core.plugin_name == op_type)
        return count

    def parse_onnx(
        self, network: Any, model: bytes, logger: Any, plugin_override: bool = True, path: Path | None = None
    ) -> Any:
        """Parse an ONNX model into `network`. With `plugin_override`, nodes whose op has a loaded
        plugin (SMA) become plugin layers instead of their model-local function bodies. `path` is
        the model's file, where external weights are looked up. Returns the parser, which must
        outlive the network."""
        parser = self.module.OnnxParser(network, logger)
        if plugin_override:
            parser.set_flag(self.module.OnnxParserFlag.ENABLE_PLUGIN_OVERRIDE)
        if not parser.parse(model, None if path is None else str(path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise TensorRTError("ONNX parse failed:\n" + "\n".join(errors))
        return parser

    # --- building ------------------------------------------------------------------------------
    def builder(self, logger: Any) -> Any:
        return self.module.Builder(logger)

    def network(self, builder: Any) -> Any:
        """A strongly typed network: precision comes from the tensor types (RTX knows no other kind)."""
        flag = 1 << int(self.module.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        return builder.create_network(flag)

    def set_targets(self, config: Any, targets: Sequence[str]) -> None:
        """Ahead-of-time targets such as ("sm86", "sm89"). TensorRT for RTX only: full TensorRT
        builds for the GPU present, so asking it for targets is an error."""
        if not targets:
            return
        if not self.is_rtx:
            raise ValueError(
                f"targets {list(targets)} need TensorRT for RTX; full TensorRT builds for the GPU present"
            )
        capabilities = [self._compute_capability(t) for t in targets]
        config.num_compute_capabilities = len(capabilities)
        for i, capability in enumerate(capabilities):
            config.set_compute_capability(capability, i)

    def rtx_targets(self) -> list[str]:
        """The ahead-of-time targets this TensorRT for RTX knows: ["sm75", "sm80", ...]."""
        return [n.lower() for n in self.module.ComputeCapability.__members__ if n.startswith("SM")]

    def check_target(self, target: str) -> None:
        """Raise ValueError naming `target` unless TensorRT for RTX can build for it."""
        name = target.strip().lower()
        known = self.rtx_targets()
        if name == "current" and hasattr(self.module.ComputeCapability, "CURRENT"):
            return
        if name == "sm90":
            raise ValueError(
                f"target sm90 (Hopper: H100, H200) is not a TensorRT for RTX target; TensorRT for RTX "
                f"{self.version} builds for {','.join(known)}. On Hopper use full TensorRT "
                "(pip install tensorrt), which builds for the GPU present"
            )
        if name not in known:
            raise ValueError(
                f"unknown target {target!r}: TensorRT for RTX {self.version} builds for {','.join(known)}"
            )

    def _compute_capability(self, target: str) -> Any:
        self.check_target(target)
        return getattr(self.module.ComputeCapability, target.strip().upper())

    def build(self, builder: Any, network: Any, config: Any, logger: Any) -> bytes:
        """Build a serialized engine, or raise with TensorRT's errors in the message."""
        first = len(logger.records)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            errors = [r.message for r in logger.records[first:] if r.severity in ("ERROR", "INTERNAL_ERROR")]
            raise TensorRTError(
                "engine build failed:\n" + "\n".join(errors or ["(TensorRT logged no error)"])
            )
        return bytes(plan)


def _make_logger_class(trt: ModuleType) -> type:
    class RecordingLogger(trt.ILogger):
        def __init__(self, min_severity: Any) -> None:
            trt.ILogger.__init__(self)
            self.min_severity = min_severity
            self.records: list[LogRecord] = []
            self._lock = threading.Lock()

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(self.min_severity):  # lower value = more severe
                with self._lock:
                    self.records.append(LogRecord(severity.name, msg))

        def text(self) -> str:
            return "\n".join(f"[{r.severity}] {r.message}" for r in self.records)

    return RecordingLogger
