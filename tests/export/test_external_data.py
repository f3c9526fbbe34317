"""Graphs over protobuf's 2 GB limit go to external data; the decision never serialises the model
(`ByteSize()` itself fails past 2 GB, as a real SD1.5 fp32 export showed)."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from mild_export.export import onnx_export


def model_with_weight(elements: int) -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.arange(elements, dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [elements])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [elements])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_weights_over_the_limit_go_to_one_external_file(tmp_path, monkeypatch):
    elements = 1 << 18  # 1 MiB of float32
    monkeypatch.setattr(onnx_export, "PROTOBUF_LIMIT", (64 << 20) + (1 << 19))  # 0.5 MiB after the margin
    path = onnx_export.save_atomically(model_with_weight(elements), tmp_path / "g.onnx")
    data = tmp_path / "g.onnx.data"
    assert data.stat().st_size == 4 * elements and path.stat().st_size < 4096
    assert data.stat().st_mode == path.stat().st_mode  # readable by whoever may read the graph
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx", "g.onnx.data"]  # no staging left
    x = np.ones(elements, dtype=np.float32)
    (y,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert np.array_equal(y, x + np.arange(elements, dtype=np.float32))


def test_weights_under_the_limit_stay_in_the_graph(tmp_path):
    path = onnx_export.save_atomically(model_with_weight(1 << 10), tmp_path / "g.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx"]
    (weight,) = onnx.load(str(path), load_external_data=False).graph.initializer
    assert weight.data_location == TensorProto.DEFAULT and not weight.external_data
    assert np.array_equal(numpy_helper.to_array(weight), np.arange(1 << 10, dtype=np.float32))
