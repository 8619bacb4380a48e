"""LayerNormFusion on decomposed layer normalizations (as opset < 17 exporters write them)."""
import numpy as np
import pytest
from onnx import helper

from support.fusion_cases import (F16, F32, assert_close, check_fusion, check_unfused, const, make_model, onnxruntime_run,
                          ops, randn, session)

pytest.importorskip("onnxruntime")

SHAPE = [2, 4, 16]


def _decomposed(opset=12, square="pow", axes=(-1,), axes2=None, beta=True, gamma=True, dtype=np.float32,
                gamma_input=False):
    """ReduceMean / Sub / Pow / ReduceMean / Add eps / Sqrt / Div / Mul gamma / Add beta."""
    axes2 = axes if axes2 is None else axes2
    norm = [SHAPE[a] for a in axes]

    def reduce(x, out, ax):
        if opset >= 18:
            return [const(out + "_axes", list(ax), np.int64), helper.make_node("ReduceMean", [x, out + "_axes"], [out])]
        return [helper.make_node("ReduceMean", [x], [out], axes=list(ax))]

    nodes = reduce("x", "mean", axes) + [helper.make_node("Sub", ["x", "mean"], ["d"])]
    if square == "pow":
        nodes += [const("two", 2.0, dtype), helper.make_node("Pow", ["d", "two"], ["sq"])]
    else:
        nodes.append(helper.make_node("Mul", ["d", "d"], ["sq"]))
    nodes += reduce("sq", "var", axes2) + [
        const("eps", 1e-5, dtype), helper.make_node("Add", ["var", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["std"]), helper.make_node("Div", ["d", "std"], ["n"])]
    inits = {}
    y = "n"
    if gamma:
        nodes.append(helper.make_node("Mul", [y, "gamma"], ["ng"]))
        y = "ng"
        if not gamma_input:
            inits["gamma"] = (1 + randn(*norm, seed=1, scale=0.2)).astype(dtype)
    if beta:
        inits["beta"] = randn(*norm, seed=2, scale=0.2).astype(dtype)
        nodes.append(helper.make_node("Add", ["beta", y], ["y"]))
    else:
        nodes.append(helper.make_node("Identity", [y], ["y"]))
    t = F16 if dtype == np.float16 else F32
    inputs = [("x", t, SHAPE)] + ([("gamma", t, norm)] if gamma_input else [])
    return make_model(nodes, inputs, [("y", t, SHAPE)], inits, opset=opset)


@pytest.mark.parametrize("square", ["pow", "mul"])
@pytest.mark.parametrize("beta", [True, False], ids=["beta", "no_beta"])
def test_opset_12_fuses_into_layer_norm_as_onnxruntime_writes_it(square, beta):
    """Below opset 17: ai.onnx LayerNormalization, which onnxruntime registers from version 1."""
    feed = {"x": randn(*SHAPE, scale=2) + 1}
    sess = check_fusion(_decomposed(square=square, beta=beta), feed, "LayerNormalization", rtol=1e-4, atol=1e-5,
                        domain="")
    node = next(n for n in sess._core.plan.graph.nodes if n.op_type == "LayerNormalization")
    assert node.opset == 12 and node.attrs["axis"] == -1


def test_opset_15_float16_keeps_the_ortgpu_layer_norm():
    feed = {"x": (randn(*SHAPE, scale=2) + 1).astype(np.float16)}
    check_fusion(_decomposed(dtype=np.float16, opset=15), feed, "LayerNormalization", rtol=3e-3, atol=3e-3,
                 domain="ortgpu")


def test_two_trailing_axes_given_as_positive_numbers_fuse_with_axis_minus_2():
    feed = {"x": randn(*SHAPE, scale=2)}
    sess = check_fusion(_decomposed(axes=(1, 2)), feed, "LayerNormalization", rtol=1e-4, atol=1e-5)
    assert next(n for n in sess._core.plan.graph.nodes if n.op_type == "LayerNormalization").attrs["axis"] == -2


@pytest.mark.parametrize("opset", [17, 18])
def test_opset_17_and_later_fuse_into_onnx_layer_normalization(opset):
    feed = {"x": randn(*SHAPE, scale=2)}
    sess = check_fusion(_decomposed(opset=opset), feed, "LayerNormalization", rtol=1e-4, atol=1e-5)
    assert next(n for n in sess._core.plan.graph.nodes if n.op_type == "LayerNormalization").domain == ""


def test_no_gamma_gets_ones():
    check_fusion(_decomposed(gamma=False), {"x": randn(*SHAPE)}, "LayerNormalization", rtol=1e-4, atol=1e-5)


def test_float16_fuses_from_opset_15():
    feed = {"x": randn(*SHAPE, dtype=np.float16)}
    check_fusion(_decomposed(opset=15, dtype=np.float16), feed, "LayerNormalization", rtol=5e-3, atol=5e-3)


@pytest.mark.parametrize("case", ["different_axes", "not_trailing", "gamma_not_constant"])
def test_near_misses_do_not_fuse(case):
    feed = {"x": randn(*SHAPE)}
    if case == "different_axes":
        model = _decomposed(axes=(-1,), axes2=(-2, -1))
    elif case == "not_trailing":
        model = _decomposed(axes=(1,), gamma=False, beta=False)
    else:
        model = _decomposed(gamma_input=True)
        feed["gamma"] = randn(16, seed=3)
        sess = session(model)   # gamma is a graph input: the normalization fuses, the Mul stays
        assert "Mul" in ops(sess) and "LayerNormalization" in ops(sess)
        assert_close(sess.run(None, feed), onnxruntime_run(model, feed), 1e-4, 1e-5)
        return
    check_unfused(model, feed, "LayerNormalization", rtol=1e-4, atol=1e-5)


def test_disabled_by_name():
    assert "ReduceMean" in ops(session(_decomposed(), disabled_optimizers=["LayerNormFusion"]))
