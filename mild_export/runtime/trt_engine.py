"""One deserialized TensorRT engine and how to call it with torch CUDA tensors.

    runner = EngineRunner(trt, engine, contract, stream)
    outputs = runner(inputs)  # {name: Tensor} in, {name: Tensor} out, on the GPU

Per distinct set of input shapes the runner allocates its input and output buffers once (torch
CUDA tensors in the engine's own I/O types) and remembers them; a call copies its arrays into
the input buffers, which is where dtypes are converted (fp32 arrays into an fp16 or bf16 engine),
and runs `execute_async_v3` on the runner's stream.

TensorRT for RTX contexts get a runtime config (`rtx_runtime`): kernels specialised eagerly, the
folder's JIT cache attached. With `cuda_graph`: TensorRT for RTX captures and replays CUDA graphs
itself (its runtime config's WHOLE_GRAPH_CAPTURE strategy, which knows when its shape-specialised
kernels are ready; its engines are stream-capturable only when built with
REQUIRE_USER_ALLOCATION). With full TensorRT the runner captures the engine call into a torch
CUDA graph on the second call with the same shapes and replays it after. Either way, if CUDA
graphs cannot be used the runner logs why and runs the engine directly.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mild_export.engine.trt_shim import TensorRT, TensorRTError
from mild_export.export.contracts import WIDENED_BY, GraphContract
from mild_export.runtime.rtx_runtime import JitCache, runtime_config

log = logging.getLogger("mild")

# TensorRT DataType member name -> torch dtype (the I/O types our graphs use, and a few more)
TORCH_DTYPES = {
    "FLOAT": torch.float32,
    "HALF": torch.float16,
    "BF16": torch.bfloat16,
    "INT64": torch.int64,
    "INT32": torch.int32,
    "INT8": torch.int8,
    "UINT8": torch.uint8,
    "BOOL": torch.bool,
}
MAX_SHAPE_SETS = 8  # buffers kept per engine; the least recently used set is dropped beyond


def torch_dtype(trt_dtype: Any, tensor: str = "") -> torch.dtype:
    """The torch dtype of a TensorRT DataType (by member name, so both modules map the same)."""
    name = getattr(trt_dtype, "name", str(trt_dtype)).rsplit(".", 1)[-1]
    if name not in TORCH_DTYPES:
        raise ValueError(
            f"engine tensor {tensor or '?'} has TensorRT type {name}, which the runtime does not "
            f"exchange (it takes {', '.join(TORCH_DTYPES)}): export the graph again"
        )
    return TORCH_DTYPES[name]


Profile = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def logged_errors(logger: Any, first: int = 0) -> list[str]:
    """The errors a recording logger (trt_shim) kept since record `first`."""
    return [r.message for r in logger.records[first:] if r.severity in ("ERROR", "INTERNAL_ERROR")]


def check_profile(
    graph: str, name: str, shape: Sequence[int], profile: Profile, dims: Sequence[int | str] = ()
) -> None:
    """Raise naming the input when `shape` is outside the engine's (min, opt, max) profile.

    `dims` are the contract's dimensions of the input (symbol names for dynamic axes), used to
    say which mild-export option widens the axis; the message follows `GraphContract.check`."""
    lo, _, hi = profile
    if len(shape) != len(lo):
        raise ValueError(f"{graph}: input {name} has rank {len(shape)}, the engine expects {len(lo)}")
    for axis, (got, a, b) in enumerate(zip(shape, lo, hi, strict=True)):
        if a <= got <= b:
            continue
        symbol = dims[axis] if axis < len(dims) else None
        if a == b:
            raise ValueError(f"{graph}: {name} axis {axis} is {got}, the engine expects {a}")
        fix = WIDENED_BY.get(symbol, "other shapes") if isinstance(symbol, str) else "other shapes"
        label = f" ({symbol})" if isinstance(symbol, str) else ""
        raise ValueError(
            f"{graph}: {name} axis {axis}{label} is {got}, outside the engine's profile {a}..{b}: "
            f"export again with {fix}"
        )


@dataclass
class _Buffers:
    """The tensors one set of input shapes runs with, and its CUDA graph once captured."""

    inputs: dict[str, Tensor]
    outputs: dict[str, Tensor]
    calls: int = 0
    graph: torch.cuda.CUDAGraph | None = field(default=None, repr=False)


class EngineRunner:
    """Calls one engine through one execution context, on one CUDA stream."""

    def __init__(
        self,
        trt: TensorRT,
        engine: Any,
        contract: GraphContract,
        stream: torch.cuda.Stream,
        logger: Any,
        cuda_graph: bool = False,
        jit_cache: JitCache | None = None,
    ):
        self.trt, self.engine, self.contract, self.stream, self.logger = trt, engine, contract, stream, logger
        self.name = contract.name
        mode = trt.module.TensorIOMode
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == mode.INPUT]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == mode.OUTPUT]
        if set(self.inputs) != set(contract.inputs) or set(self.outputs) != set(contract.spec.outputs):
            raise ValueError(
                f"{self.name}: the engine has inputs {sorted(self.inputs)} and outputs "
                f"{sorted(self.outputs)}, the {self.name} contract {sorted(contract.inputs)} and "
                f"{sorted(contract.spec.outputs)}: "
                "build the engines again with mild-export --force"
            )
        host = [n for n in names if engine.get_tensor_location(n) == trt.module.TensorLocation.HOST]
        if host:
            raise ValueError(f"{self.name}: engine tensors {host} live in host memory (shape tensors?)")
        self.dtypes = {n: torch_dtype(engine.get_tensor_dtype(n), n) for n in names}
        self.profiles: dict[str, Profile] = {
            n: tuple(tuple(d) for d in engine.get_tensor_profile_shape(n, 0)) for n in self.inputs
        }
        self.cuda_graph = cuda_graph
        self.graph_off_reason: str | None = None if cuda_graph else "not asked for (cuda_graph=False)"
        self.runtime_config = None
        if trt.is_rtx:
            self.runtime_config, self.graph_off_reason = runtime_config(
                trt, engine, self.name, jit_cache, cuda_graph
            )
        if self.runtime_config is not None:
            self.context = engine.create_execution_context(self.runtime_config)
        else:
            self.context = engine.create_execution_context()
        if self.context is None:
            raise TensorRTError(f"{self.name}: no execution context (out of GPU memory?)\n{logger.text()}")
        self._sets: OrderedDict[tuple, _Buffers] = OrderedDict()
        self._bound: tuple | None = None  # the shape set the context's shapes and addresses are for
        self.new_shapes = False  # whether the last call was the first with its shapes (JIT compiles)

    def check(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """The contract's check (names the mild-export option), then the engine's own profile."""
        self.contract.check(dict(shapes))
        for name in self.inputs:
            check_profile(self.name, name, shapes[name], self.profiles[name], self.contract.inputs[name])

    def __call__(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Run on `inputs` (any device and float type); outputs are the runner's own buffers, valid
        until its next call with the same shapes."""
        shapes = {name: tuple(inputs[name].shape) for name in self.inputs}
        self.check(shapes)
        key = tuple(shapes[name] for name in self.inputs)
        self.new_shapes = key not in self._sets
        self.stream.wait_stream(torch.cuda.current_stream(self.stream.device))
        with torch.cuda.stream(self.stream):
            buffers = self._buffers(key, shapes)
            for name in self.inputs:
                buffers.inputs[name].copy_(inputs[name], non_blocking=True)  # dtype converted here
            self._execute(key, buffers)
        torch.cuda.current_stream(self.stream.device).wait_stream(self.stream)
        return buffers.outputs

    # --- buffers -------------------------------------------------------------------------------
    def _buffers(self, key: tuple, shapes: Mapping[str, tuple[int, ...]]) -> _Buffers:
        if key in self._sets:
            self._sets.move_to_end(key)
            return self._sets[key]
        device = self.stream.device
        made = {n: torch.empty(shapes[n], dtype=self.dtypes[n], device=device) for n in self.inputs}
        self._bind(key, made, {})
        outputs = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise TensorRTError(f"{self.name}: output {name} has unresolved shape {shape}")
            outputs[name] = torch.empty(shape, dtype=self.dtypes[name], device=device)
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        self._sets[key] = _Buffers(made, outputs)
        if len(self._sets) > MAX_SHAPE_SETS:
            self._sets.popitem(last=False)
        return self._sets[key]

    def _bind(self, key: tuple, inputs: Mapping[str, Tensor], outputs: Mapping[str, Tensor]) -> None:
        """Give the context this shape set's input shapes and the addresses of its buffers. Graphs
        captured for other shapes are dropped: they were captured against the old binding."""
        for other in self._sets.values():
            other.graph, other.calls = None, 0
        for name, tensor in inputs.items():
            if not self.context.set_input_shape(name, tuple(tensor.shape)):
                raise TensorRTError(
                    f"{self.name}: TensorRT refused shape {tuple(tensor.shape)} for {name}\n"
                    + "\n".join(logged_errors(self.logger))
                )
            self.context.set_tensor_address(name, tensor.data_ptr())
        for name, tensor in outputs.items():
            self.context.set_tensor_address(name, tensor.data_ptr())
        self._bound = key

    # --- execution -----------------------------------------------------------------------------
    def _execute(self, key: tuple, buffers: _Buffers) -> None:
        if buffers.graph is not None:
            buffers.graph.replay()
            return
        rebound = self._bound != key
        if rebound:
            self._bind(key, buffers.inputs, buffers.outputs)
        buffers.calls += 1
        # capture only after one direct call with these shapes bound (TensorRT's first call after a
        # shape change may allocate or update state, which a capture must not see)
        capture = self.graph_off_reason is None and not rebound and buffers.calls >= 2
        if capture and self._capture(buffers):
            buffers.graph.replay()
            return
        self._enqueue()

    def _enqueue(self) -> None:
        first = len(self.logger.records)
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            errors = logged_errors(self.logger, first)
            raise TensorRTError(
                f"{self.name}: execute_async_v3 failed\n"
                + "\n".join(errors or ["(TensorRT logged no error)"])
            )

    def _capture(self, buffers: _Buffers) -> bool:
        """Capture one engine call into a CUDA graph; on failure log why and stop trying."""
        capturable = getattr(self.context, "is_stream_capturable", None)
        if capturable is not None and not capturable(self.stream.cuda_stream):
            return self._graph_off("TensorRT says the execution context is not stream capturable")
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
                self._enqueue()
        except (RuntimeError, TensorRTError) as err:
            torch.cuda.synchronize(self.stream.device)
            return self._graph_off(f"capture failed ({str(err).splitlines()[0]})")
        buffers.graph = graph
        log.info("tensorrt: %s captured into a CUDA graph for shapes %s", self.name, self._shapes(buffers))
        return True

    def _graph_off(self, reason: str) -> bool:
        self.graph_off_reason = reason
        log.warning("tensorrt: %s runs without CUDA graphs: %s", self.name, reason)
        return False

    def _shapes(self, buffers: _Buffers) -> str:
        return ", ".join(f"{n}={list(t.shape)}" for n, t in buffers.inputs.items())
