"""Exporting one graph to ONNX: torch.export with the contract's dynamic axes, the SMA node
with its function body, external data above 2 GB, a full onnx.checker pass, atomic writes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import tempfile
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn
from torch.export import Dim

from mild_export.export.contracts import GraphContract
from mild_export.export.precision import Precision, SMAForm
from mild_export.ops import sma_onnx, sma_torch
from reference import sma

log = logging.getLogger("mild")

OPSET = 18
BF16_OPSET = 22  # Conv and most other ops accept bfloat16 from opset 22 on


def opset_for(precision: Precision) -> int:
    return BF16_OPSET if precision is Precision.BF16 else OPSET


PROTOBUF_LIMIT = 2**31 - 1


def check_opset(precision: Precision) -> None:
    """The installed onnx must know every op of the opset we write."""
    needed = opset_for(precision)
    if onnx.defs.onnx_opset_version() < needed:
        raise ValueError(
            f"the installed onnx {onnx.__version__} writes opset {onnx.defs.onnx_opset_version()} at most, "
            f"mild-export needs opset {needed} for {precision.value}: pip install -U onnx"
        )


def dynamic_shapes(contract: GraphContract) -> dict[str, dict[int, Dim]]:
    """torch.export dims from the contract's symbols; shared symbols share one Dim."""
    dims: dict[str, Dim] = {}
    for symbol, r in contract.symbols.items():
        if r.min == r.max:
            continue
        base = Dim(
            f"{symbol}_q" if r.multiple > 1 else symbol, min=r.min // r.multiple, max=r.max // r.multiple
        )
        dims[symbol] = base * r.multiple if r.multiple > 1 else base
    return {
        name: {axis: dims[d] for axis, d in enumerate(shape) if isinstance(d, str) and d in dims}
        for name, shape in contract.inputs.items()
    }


def export_graph(
    contract: GraphContract, module: nn.Module, path: Path, precision: Precision, form: SMAForm
) -> Path:
    """Write `path` (and its external data) atomically; returns the path."""
    module = module.to(precision.dtype).eval()
    sample = contract.sample_inputs(precision.dtype, torch.Generator().manual_seed(0))
    backend = "fold" if form is SMAForm.FOLD else "custom-op"
    with sma.use_backend(backend), torch.no_grad(), warnings.catch_warnings(), _quiet_exporter():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (),
            kwargs=sample,
            dynamic_shapes=dynamic_shapes(contract),
            input_names=list(contract.inputs),
            output_names=list(contract.spec.outputs),
            custom_translation_table={sma_torch.OVERLOAD: sma_onnx.emit_node},
            opset_version=opset_for(precision),
            dynamo=True,
            optimize=True,
            verbose=False,
        )
    model = program.model_proto
    if any(n.domain == sma_onnx.SMA.domain for n in _all_nodes(model)):
        sma_onnx.add_function(model)
    return save_atomically(model, path)


def save_atomically(model: onnx.ModelProto, path: Path) -> Path:
    """Save into a temporary folder beside `path`, check, then move: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.stem}.") as tmp:
        staged = Path(tmp) / path.name
        large = _too_large_for_one_file(model)
        data_name = f"{path.name}.data"
        onnx.save_model(
            model, staged, save_as_external_data=large, all_tensors_to_one_file=True, location=data_name
        )
        onnx.checker.check_model(str(staged), full_check=True)
        if large:
            shutil.copymode(staged, Path(tmp) / data_name)  # onnx writes it 0600; the graph has the umask's
            shutil.move(Path(tmp) / data_name, path.parent / data_name)
        staged.replace(path)
    return path


def initializer_bytes(model: onnx.ModelProto) -> int:
    """Bytes of the graph's initializers from their shapes and types, inline or external."""
    return sum(
        math.prod(t.dims) * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        for t in model.graph.initializer
    )


def _too_large_for_one_file(model: onnx.ModelProto) -> bool:
    """Protobuf cannot serialise past 2 GB, and `ByteSize()` itself fails there, so count the
    initializers' bytes: the rest of a graph is small, and a margin covers it."""
    return initializer_bytes(model) > PROTOBUF_LIMIT - (64 << 20)


def _all_nodes(model: onnx.ModelProto):
    yield from model.graph.node
    for f in model.functions:
        yield from f.node


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter prints progress lines and torchvision notices; the CLI shows its own."""
    level = logging.getLogger("torch.onnx").level
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(None):
            yield
    finally:
        logging.getLogger("torch.onnx").setLevel(level)
