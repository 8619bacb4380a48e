"""GeluFusion / FastGeluFusion on small graphs in the arrangements exporters write."""
import math

import numpy as np
import pytest
from onnx import helper

from support.fusion_cases import F16, F32, check_fusion, check_unfused, const, make_model, ops, randn, session

pytest.importorskip("onnxruntime")


def _erf_gelu(arrangement="x_a_half", div=True, sqrt2=math.sqrt(2), x="x", y="y", dtype=np.float32):
    """x * 0.5 * (1 + erf(x / sqrt2)) with the product written three ways."""
    c = lambda name, v: const(name, v, dtype)  # noqa: E731
    nodes = [c("k", sqrt2 if div else 1 / sqrt2), c("one", 1.0), c("half", 0.5),
             helper.make_node("Div" if div else "Mul", [x, "k"], ["s"]),
             helper.make_node("Erf", ["s"], ["e"]),
             helper.make_node("Add", ["one", "e"], ["a"])]
    if arrangement == "x_a_half":        # (x * a) * 0.5, as torch exports it
        nodes += [helper.make_node("Mul", [x, "a"], ["m"]), helper.make_node("Mul", ["m", "half"], [y])]
    elif arrangement == "x_ahalf":       # x * (a * 0.5)
        nodes += [helper.make_node("Mul", ["half", "a"], ["m"]), helper.make_node("Mul", [x, "m"], [y])]
    else:                                # (x * 0.5) * a
        nodes += [helper.make_node("Mul", [x, "half"], ["m"]), helper.make_node("Mul", ["a", "m"], [y])]
    return nodes


def _model(nodes, dtype=F32, opset=17, extra_outputs=()):
    outs = [("y", dtype, [2, 5, 8])] + [(n, dtype, None) for n in extra_outputs]
    return make_model(nodes, [("x", dtype, [2, 5, 8])], outs, opset=opset)


@pytest.mark.parametrize("arrangement", ["x_a_half", "x_ahalf", "xhalf_a"])
@pytest.mark.parametrize("div", [True, False], ids=["div_sqrt2", "mul_rsqrt2"])
def test_erf_form_fuses_into_onnxruntime_gelu_below_opset_20(arrangement, div):
    feed = {"x": randn(2, 5, 8, scale=3)}
    sess = check_fusion(_model(_erf_gelu(arrangement, div)), feed, "Gelu", domain="com.microsoft")
    assert ops(sess) == ["Gelu"]


def test_erf_form_fuses_into_onnx_gelu_from_opset_20():
    sess = check_fusion(_model(_erf_gelu(), opset=20), {"x": randn(2, 5, 8, scale=3)}, "Gelu", domain="")
    node = sess._core.plan.graph.nodes[0]
    assert (node.domain, node.attrs) == ("", {"approximate": "none"})


def _tanh_gelu(cube="pow", dtype=np.float32):
    """0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))) as GPT-2 exports it."""
    c = lambda name, v: const(name, v, dtype)  # noqa: E731
    nodes = [c("half", 0.5), c("three", 3.0), c("k", 0.044715), c("r", math.sqrt(2 / math.pi)), c("one", 1.0),
             helper.make_node("Mul", ["x", "half"], ["xh"])]
    if cube == "pow":
        nodes.append(helper.make_node("Pow", ["x", "three"], ["x3"]))
    else:
        nodes += [helper.make_node("Mul", ["x", "x"], ["x2"]), helper.make_node("Mul", ["x", "x2"], ["x3"])]
    nodes += [helper.make_node("Mul", ["x3", "k"], ["w"]), helper.make_node("Add", ["x", "w"], ["u"]),
              helper.make_node("Mul", ["u", "r"], ["t_in"]), helper.make_node("Tanh", ["t_in"], ["t"]),
              helper.make_node("Add", ["t", "one"], ["a"]), helper.make_node("Mul", ["xh", "a"], ["y"])]
    return nodes


@pytest.mark.parametrize("cube", ["pow", "mul"])
def test_tanh_form_fuses_into_fast_gelu(cube):
    sess = check_fusion(_model(_tanh_gelu(cube)), {"x": randn(2, 5, 8, scale=3)}, "FastGelu", domain="com.microsoft")
    assert ops(sess) == ["FastGelu"]


def test_tanh_form_fuses_into_onnx_gelu_tanh_from_opset_20():
    sess = check_fusion(_model(_tanh_gelu(), opset=20), {"x": randn(2, 5, 8, scale=3)}, "Gelu")
    assert sess._core.plan.graph.nodes[0].attrs == {"approximate": "tanh"}


def test_float16_fuses_and_matches():
    feed = {"x": randn(2, 5, 8, scale=3, dtype=np.float16)}
    # onnxruntime's CPU provider runs these for float32 only: ortgpu's ops, with function bodies
    check_fusion(_model(_erf_gelu(dtype=np.float16), dtype=F16), feed, "Gelu", rtol=2e-3, atol=2e-3, domain="ortgpu")
    check_fusion(_model(_tanh_gelu(dtype=np.float16), dtype=F16), feed, "FastGelu", rtol=2e-3, atol=2e-3,
                 domain="ortgpu")


def test_float16_below_opset_15_is_left_alone():
    """The function body could not type its constants there."""
    feed = {"x": randn(2, 5, 8, scale=3, dtype=np.float16)}
    check_unfused(_model(_erf_gelu(dtype=np.float16), dtype=F16, opset=13), feed, "Gelu", rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("case", ["wrong_constant", "intermediate_is_output", "tanh_wrong_cube"])
def test_near_misses_do_not_fuse(case):
    feed = {"x": randn(2, 5, 8, scale=3)}
    if case == "wrong_constant":
        model = _model(_erf_gelu(sqrt2=math.sqrt(3)))
    elif case == "intermediate_is_output":
        model = _model(_erf_gelu(), extra_outputs=["e"])
    else:
        nodes = _tanh_gelu()
        nodes[1] = const("three", 2.0)
        model = _model(nodes)
    check_unfused(model, feed, "Gelu")
    assert "FastGelu" not in ops(session(model))


def test_disabled_by_name():
    model = _model(_erf_gelu())
    assert "Erf" in ops(session(model, disabled_optimizers=["GeluFusion"]))
    assert "Tanh" in ops(session(_model(_tanh_gelu()), disabled_optimizers=["FastGeluFusion"]))
