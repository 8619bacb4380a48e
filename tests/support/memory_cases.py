"""The model shared by the memory tests of the device double (``test_memory_session.py``) and
of the GPU (``gpu/test_gpu_memory.py``)."""
from __future__ import annotations

from onnx import TensorProto, helper


def chain_model() -> bytes:
    """y = Relu(x - Sigmoid(x) * 2): four element-wise steps on an N x M float32 input."""
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    nodes = [helper.make_node("Sigmoid", ["x"], ["a"], name="sigmoid"),
             helper.make_node("Mul", ["a", "two"], ["b"], name="mul"),
             helper.make_node("Sub", ["x", "b"], ["c"], name="sub"),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "M"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "M"])], [two])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()
