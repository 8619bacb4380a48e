"""ReluQuantFusion: a Relu read only by a QuantizeLinear whose zero point is its type's minimum
leaves the graph with the same outputs (exactly: that Q clamps negatives to 0 anyway); another
zero point, a second reader or a graph output keeps it."""
import numpy as np
import pytest
from onnx import TensorProto, helper

from support.fusion_cases import F32, make_model, onnxruntime_run, ops, randn, session

pytest.importorskip("onnxruntime")


def _model(zp, qtype=TensorProto.UINT8, relu_out_used=False):
    zdt = np.uint8 if qtype == TensorProto.UINT8 else np.int8
    nodes = [helper.make_node("Mul", ["x", "k"], ["m"]), helper.make_node("Relu", ["m"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    outs = [("y", F32, [3, 5])] + ([("r", F32, [3, 5])] if relu_out_used else [])
    return make_model(nodes, [("x", F32, [3, 5])], outs,
                      {"k": np.float32(1.5), "s": np.array(0.02, np.float32), "z": np.array(zp, zdt)})


@pytest.mark.parametrize("zp,qtype", [(0, TensorProto.UINT8), (-128, TensorProto.INT8)])
def test_relu_before_a_clamping_quantize_leaves(zp, qtype):
    model = _model(zp, qtype)
    feed = {"x": randn(3, 5, scale=2)}
    sess = session(model, "ORT_ENABLE_BASIC")
    assert "Relu" not in ops(sess)
    np.testing.assert_array_equal(sess.run(None, feed)[0], onnxruntime_run(model, feed)[0])
    np.testing.assert_array_equal(sess.run(None, feed)[0], session(model, "ORT_DISABLE_ALL").run(None, feed)[0])


@pytest.mark.parametrize("case", ["zero_point_not_minimum", "relu_output_used"])
def test_relu_stays(case):
    model = _model(10) if case == "zero_point_not_minimum" else _model(0, relu_out_used=True)
    feed = {"x": randn(3, 5, scale=2)}
    sess = session(model, "ORT_ENABLE_BASIC")
    assert "Relu" in ops(sess)
    for a, b in zip(sess.run(None, feed), onnxruntime_run(model, feed)):
        np.testing.assert_array_equal(a, b)


def test_disabled_by_name():
    assert "Relu" in ops(session(_model(0), disabled_optimizers=["ReluQuantFusion"]))
