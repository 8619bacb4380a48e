"""BiasGeluFusion: bias Add + Gelu (after GeluFusion, or ai.onnx Gelu at opset 20)."""
import pytest
from onnx import helper

from support.fusion_cases import F32, check_fusion, check_unfused, make_model, ops, randn, session
from test_gelu_fusion import _erf_gelu, _tanh_gelu

pytest.importorskip("onnxruntime")


def _model(gelu_nodes, bias_shape=(8,), opset=17, add_out_used=False, bias_input=False):
    nodes = [helper.make_node("MatMul", ["x0", "W"], ["h"]),
             helper.make_node("Add", ["h", "bias"], ["x"])] + gelu_nodes
    inits = {"W": randn(8, 8, seed=1, scale=0.5)}
    inputs = [("x0", F32, [2, 5, 8])]
    if bias_input:
        inputs.append(("bias", F32, list(bias_shape)))
    else:
        inits["bias"] = randn(*bias_shape, seed=2)
    outputs = [("y", F32, [2, 5, 8])] + ([("x", F32, [2, 5, 8])] if add_out_used else [])
    return make_model(nodes, inputs, outputs, inits, opset=opset)


def _feed(**extra):
    return dict({"x0": randn(2, 5, 8, scale=2)}, **extra)


def test_erf_gelu_with_bias_becomes_bias_gelu():
    sess = check_fusion(_model(_erf_gelu()), _feed(), "BiasGelu", rtol=1e-5, atol=1e-6, domain="com.microsoft")
    assert ops(sess) == ["MatMul", "BiasGelu"]


def test_onnx_gelu_with_bias_becomes_bias_gelu_at_opset_20():
    nodes = [helper.make_node("Gelu", ["x"], ["y"])]
    check_fusion(_model(nodes, opset=20), _feed(), "BiasGelu", domain="com.microsoft")


def test_tanh_gelu_with_bias_becomes_fast_gelu_with_bias():
    sess = check_fusion(_model(_tanh_gelu()), _feed(), "FastGelu", domain="com.microsoft")
    node = next(n for n in sess._core.plan.graph.nodes if n.op_type == "FastGelu")
    assert node.inputs == ["h", "bias"]
    sess = check_fusion(_model([helper.make_node("Gelu", ["x"], ["y"], approximate="tanh")], opset=20),
                        _feed(), "FastGelu", domain="com.microsoft")


@pytest.mark.parametrize("case", ["bias_not_constant", "bias_2d", "sum_used_elsewhere"])
def test_near_misses_do_not_fuse(case):
    feed = _feed()
    if case == "bias_not_constant":
        model = _model(_erf_gelu(), bias_input=True)
        feed["bias"] = randn(8, seed=3)
    elif case == "bias_2d":
        model = _model(_erf_gelu(), bias_shape=(5, 8))
    else:
        model = _model(_erf_gelu(), add_out_used=True)
    check_unfused(model, feed, "BiasGelu")
    assert "Gelu" in ops(session(model))   # the Gelu itself still fuses


def test_disabled_by_name():
    assert "Add" in ops(session(_model(_erf_gelu()), disabled_optimizers=["BiasGeluFusion"]))
