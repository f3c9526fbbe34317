"""The ONNX function body of mild.SpatiallyModulatedAttention, run alone in ONNX Runtime."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from mild_export.ops import sma_onnx
from mild_export.ops.schema import SMA
from reference import sma
from tests.reference.test_sma import random_inputs

RANKS = {
    "q": ["b", "h", "s", "d"],
    "k": ["b", "h", "s", "d"],
    "v": ["b", "h", "s", "d"],
    "m_q": ["b", "s"],
    "m_k": ["b", "s"],
    "alpha": ["h", 2, 2],
}


def single_node_model(dtype: int) -> onnx.ModelProto:
    names = list(SMA.inputs)
    node = helper.make_node(SMA.op_type, names, ["out"], domain=SMA.domain)
    graph = helper.make_graph(
        [node],
        "sma",
        [helper.make_tensor_value_info(n, dtype, RANKS[n]) for n in names],
        [helper.make_tensor_value_info("out", dtype, RANKS["q"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    sma_onnx.add_function(model)
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize(("s", "d"), [(37, 40), (64, 64), (9, 80)])
def test_function_body_equals_the_reference(soft, s, d):
    session = ort.InferenceSession(single_node_model(TensorProto.FLOAT).SerializeToString())
    q, k, v, m, alpha = random_inputs(2, 3, s, d, soft, seed=s * d)
    expected = sma.attention_reference(q, k, v, m, m, alpha)  # float64
    feeds = dict(zip(SMA.inputs, (t.float().numpy() for t in (q, k, v, m, m, alpha)), strict=True))
    (out,) = session.run(None, feeds)
    # float32 inputs: the error of the same math done by PyTorch in float32 sets the bar
    torch_fp32 = sma.attention_reference(*(t.float() for t in (q, k, v, m, m, alpha))).double()
    tol = SMA.tolerances["float32"]
    ours = np.abs(out - expected.numpy()).max()
    theirs = (torch_fp32 - expected).abs().max().item()
    assert ours <= tol.factor * theirs + tol.atol, (ours, theirs)
    assert np.abs(out - torch.nn.functional.scaled_dot_product_attention(q, k, v).numpy()).max() > 1e-3


def test_function_body_in_fp16_is_as_good_as_pytorch_fp16():
    session = ort.InferenceSession(single_node_model(TensorProto.FLOAT16).SerializeToString())
    q, k, v, m, alpha = random_inputs(1, 2, 50, 64, soft=True, seed=3)
    expected = sma.attention_reference(q, k, v, m, m, alpha)
    halves = [t.half() for t in (q, k, v, m, m, alpha)]
    (out,) = session.run(None, dict(zip(SMA.inputs, (t.numpy() for t in halves), strict=True)))
    theirs = (sma.attention_reference(*halves).double() - expected).abs().max().item()
    ours = np.abs(out.astype(np.float64) - expected.numpy()).max()
    tol = SMA.tolerances["float16"]
    assert ours <= tol.factor * theirs + tol.atol, (ours, theirs)
