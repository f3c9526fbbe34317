"""A one-node ONNX model of the SMA op (with its model-local function), for plugin tests."""

from __future__ import annotations

from onnx import TensorProto, helper

from mild_export.ops import sma_onnx
from mild_export.ops.schema import SMA

DEFAULT_SHAPES = {
    "q": ["B", 2, 77, 40],
    "k": ["B", 2, 77, 40],
    "v": ["B", 2, 77, 40],
    "m_q": ["B", 77],
    "m_k": ["B", 77],
    "alpha": [2, 2, 2],
}


def sma_model(
    elem_type: int = TensorProto.FLOAT16,
    shapes: dict[str, list] | None = None,
    types: dict[str, int] | None = None,
) -> bytes:
    """out = SMA(q, k, v, m_q, m_k, alpha); `shapes`/`types` override single inputs (dims may be names)."""
    shapes = {**DEFAULT_SHAPES, **(shapes or {})}
    types = {name: elem_type for name in SMA.inputs} | (types or {})
    inputs = [helper.make_tensor_value_info(n, types[n], shapes[n]) for n in SMA.inputs]
    out_shape = [*shapes["q"][:-1], shapes["v"][-1]]
    output = helper.make_tensor_value_info("out", types["q"], out_shape)
    node = helper.make_node(SMA.op_type, list(SMA.inputs), ["out"], name="sma0", domain=SMA.domain)
    graph = helper.make_graph([node], "sma_one_node", inputs, [output])
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(SMA.domain, SMA.version)],
    )
    sma_onnx.add_function(model)
    return model.SerializeToString()
