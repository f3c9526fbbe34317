"""SpatiallyModulatedAttention in ONNX: a `mild` domain node with a model-local function body.

ONNX Runtime, and any parser without the plugin, run the body (standard opset-18 ops);
TensorRT replaces the node with the plugin when the parser's plugin-override flag is set.
The body computes the reduced bias beta(m_i) * m_j (DESIGN.md section 5), equal to Eq. 9 in the
softmax, with the bias and softmax in fp32 whatever the input precision.
"""

from __future__ import annotations

import onnx
import onnxscript
from onnx.defs import OpSchema
from onnxscript import opset18 as op

from mild_export.ops.schema import SMA

OPSET = onnxscript.values.Opset(SMA.domain, SMA.version)
TENSOR_TYPES = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"]


@onnxscript.script(OPSET, default_opset=op)
def SpatiallyModulatedAttention(q, k, v, m_q, m_k, alpha):
    a = op.Cast(op.Reshape(alpha, op.Constant(value_ints=[-1, 4])), to=1)  # [H, 4]: a00 a01 a10 a11
    a00 = op.Slice(a, op.Constant(value_ints=[0]), op.Constant(value_ints=[1]), op.Constant(value_ints=[1]))
    a01 = op.Slice(a, op.Constant(value_ints=[1]), op.Constant(value_ints=[2]), op.Constant(value_ints=[1]))
    a10 = op.Slice(a, op.Constant(value_ints=[2]), op.Constant(value_ints=[3]), op.Constant(value_ints=[1]))
    a11 = op.Slice(a, op.Constant(value_ints=[3]), op.Constant(value_ints=[4]), op.Constant(value_ints=[1]))
    c0 = op.Unsqueeze(op.Sub(a01, a00), op.Constant(value_ints=[0]))  # [1, H, 1]
    c1 = op.Unsqueeze(op.Add(op.Sub(op.Sub(a11, a10), a01), a00), op.Constant(value_ints=[0]))
    mq = op.Unsqueeze(op.Cast(m_q, to=1), op.Constant(value_ints=[1, 3]))  # [B, 1, S, 1]
    mk = op.Unsqueeze(op.Cast(m_k, to=1), op.Constant(value_ints=[1, 2]))  # [B, 1, 1, S]
    beta = op.Add(
        op.Unsqueeze(c0, op.Constant(value_ints=[3])),
        op.Mul(mq, op.Unsqueeze(c1, op.Constant(value_ints=[3]))),
    )
    depth = op.Cast(op.Shape(q, start=3, end=4), to=1)
    scale = op.Div(op.Constant(value_float=1.0), op.Sqrt(depth))
    scores = op.Cast(op.MatMul(q, op.Transpose(k, perm=[0, 1, 3, 2])), to=1)
    logits = op.Add(op.Mul(scores, scale), op.Mul(beta, mk))
    probs = op.CastLike(op.Softmax(logits, axis=-1), v)
    return op.MatMul(probs, v)


def register_schema() -> None:
    """Make the op known to onnx in this process, so the exporter can emit the node by name."""
    if onnx.defs.has(SMA.op_type, SMA.domain):
        return
    names = ("q", "k", "v", "m_q", "m_k", "alpha")
    onnx.defs.register_schema(
        OpSchema(
            SMA.op_type,
            SMA.domain,
            SMA.version,
            inputs=[OpSchema.FormalParameter(n, "T") for n in names],
            outputs=[OpSchema.FormalParameter("out", "T")],
            type_constraints=[("T", TENSOR_TYPES, "attention and mask precision")],
        )
    )


def emit_node(q, k, v, m_q, m_k, alpha):
    """The exporter's translation of the torch custom op: one node of the `mild` domain."""
    register_schema()
    return getattr(OPSET, SMA.op_type)(q, k, v, m_q, m_k, alpha)


def function_proto() -> onnx.FunctionProto:
    return SpatiallyModulatedAttention.to_function_proto()


def add_function(model: onnx.ModelProto) -> None:
    """Attach the model-local function body of every SMA node (once) and the opset import.

    The body's ops mean the same from opset 18 to 22, so it imports the model's own version.
    """
    if not any(f.domain == SMA.domain and f.name == SMA.op_type for f in model.functions):
        function = function_proto()
        version = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        for opset in function.opset_import:
            if opset.domain in ("", "ai.onnx"):
                opset.version = version
        model.functions.append(function)
    if not any(o.domain == SMA.domain for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(SMA.domain, SMA.version))
