"""MatMulScaleFusion: scalar Mul/Div around a MatMul becomes FusedMatMul's alpha (onnxruntime's
com.microsoft op, checked against onnxruntime on the unfused model)."""
import numpy as np
import pytest
from onnx import helper

from support.fusion_cases import F16, F32, MS, check_fusion, check_unfused, const, make_model, ops, randn, session

pytest.importorskip("onnxruntime")

Q, K = (2, 3, 5, 4), (2, 3, 4, 5)   # query (batch, heads, tokens, head size) and transposed key


def _fused(sess):
    return [n for n in sess._core.plan.graph.nodes if n.op_type == "FusedMatMul"]


def _sdpa_scores(scale_q=True, scale_k=True):
    """torch's scaled_dot_product_attention export: q * sqrt(s) and k^T * sqrt(s), then MatMul."""
    nodes = [const("s", 0.5 ** 0.5)]
    q, k = "q", "kt"
    if scale_q:
        nodes.append(helper.make_node("Mul", ["q", "s"], ["qs"]))
        q = "qs"
    if scale_k:
        nodes.append(helper.make_node("Mul", ["s", "kt"], ["ks"]))
        k = "ks"
    nodes.append(helper.make_node("MatMul", [q, k], ["y"]))
    return make_model(nodes, [("q", F32, list(Q)), ("kt", F32, list(K))], [("y", F32, [2, 3, 5, 5])])


def _feed():
    return {"q": randn(*Q, seed=1), "kt": randn(*K, seed=2)}


def test_both_inputs_scaled_as_torch_sdpa_writes_it():
    sess = check_fusion(_sdpa_scores(), _feed(), "FusedMatMul", domain=MS)
    assert ops(sess) == ["FusedMatMul"]
    (node,) = _fused(sess)
    assert node.inputs == ["q", "kt"] and node.attrs["alpha"] == pytest.approx(0.5)


def test_one_input_scaled():
    sess = check_fusion(_sdpa_scores(scale_k=False), _feed(), "FusedMatMul", domain=MS)
    assert _fused(sess)[0].attrs["alpha"] == pytest.approx(0.5 ** 0.5)


def test_output_divided_as_eager_attention_writes_it():
    """scores / sqrt(head size) after the MatMul, the scale an initializer of shape (1,)."""
    nodes = [helper.make_node("MatMul", ["q", "kt"], ["scores"]),
             helper.make_node("Div", ["scores", "d"], ["y"])]
    model = make_model(nodes, [("q", F32, list(Q)), ("kt", F32, list(K))], [("y", F32, [2, 3, 5, 5])],
                       {"d": np.array([2.0], np.float32)})
    sess = check_fusion(model, _feed(), "FusedMatMul", domain=MS)
    assert _fused(sess)[0].attrs["alpha"] == pytest.approx(0.5)


def test_input_and_output_scales_multiply():
    nodes = [const("a", 3.0), const("b", 0.25),
             helper.make_node("Div", ["q", "a"], ["qa"]),
             helper.make_node("MatMul", ["qa", "kt"], ["scores"]),
             helper.make_node("Mul", ["b", "scores"], ["y"])]
    model = make_model(nodes, [("q", F32, list(Q)), ("kt", F32, list(K))], [("y", F32, [2, 3, 5, 5])])
    sess = check_fusion(model, _feed(), "FusedMatMul", domain=MS)
    (node,) = _fused(sess)
    assert node.inputs == ["q", "kt"] and node.outputs == ["y"]
    assert node.attrs["alpha"] == pytest.approx(0.25 / 3.0)


def test_fused_matmul_keeps_its_transposes_and_alpha():
    """A com.microsoft FusedMatMul (transB, alpha 2) scaled once more."""
    nodes = [const("s", 0.5),
             helper.make_node("Mul", ["q", "s"], ["qs"]),
             helper.make_node("FusedMatMul", ["qs", "k"], ["y"], domain=MS, alpha=2.0, transB=1)]
    model = make_model(nodes, [("q", F32, list(Q)), ("k", F32, [2, 3, 5, 4])], [("y", F32, [2, 3, 5, 5])])
    model.opset_import.append(helper.make_opsetid(MS, 1))
    feed = {"q": randn(*Q, seed=1), "k": randn(2, 3, 5, 4, seed=2)}
    sess = check_fusion(model, feed, "FusedMatMul", domain=MS)
    assert ops(sess) == ["FusedMatMul"]
    (node,) = _fused(sess)
    assert node.attrs["transB"] == 1 and node.attrs["alpha"] == pytest.approx(1.0)


@pytest.mark.parametrize("case", ["scale_not_scalar", "scale_raises_rank", "scaled_value_read_twice",
                                  "scale_is_dividend", "scale_is_input", "float16"])
def test_near_misses_do_not_fuse(case):
    inputs = [("q", F32, list(Q)), ("kt", F32, list(K))]
    outputs = [("y", F32, [2, 3, 5, 5])]
    feed, inits = _feed(), {}
    nodes = [helper.make_node("MatMul", ["qs", "kt"], ["y"])]
    if case == "scale_not_scalar":          # one factor per head size column
        nodes.insert(0, helper.make_node("Mul", ["q", "s"], ["qs"]))
        inits["s"] = randn(4, seed=3)
    elif case == "scale_raises_rank":       # a (1,1,1,1,1) one-element constant broadcasts q to rank 5
        nodes.insert(0, helper.make_node("Mul", ["q", "s"], ["qs"]))
        inits["s"] = np.full((1, 1, 1, 1, 1), 0.5, np.float32)
        outputs = [("y", F32, [1, 2, 3, 5, 5])]
    elif case == "scaled_value_read_twice":
        nodes.insert(0, helper.make_node("Mul", ["q", "s"], ["qs"]))
        inits["s"] = np.array(0.5, np.float32)
        outputs.append(("qs", F32, list(Q)))
    elif case == "scale_is_dividend":       # s / q is no scaling of q
        nodes.insert(0, helper.make_node("Div", ["s", "q"], ["qs"]))
        inits["s"] = np.array(0.5, np.float32)
    elif case == "scale_is_input":          # a graph input may change between runs
        nodes.insert(0, helper.make_node("Mul", ["q", "s"], ["qs"]))
        inputs.append(("s", F32, []))
        feed["s"] = np.array(0.5, np.float32)
    else:
        nodes.insert(0, helper.make_node("Mul", ["q", "s"], ["qs"]))
        inits["s"] = np.array(0.5, np.float16)
        inputs = [("q", F16, list(Q)), ("kt", F16, list(K))]
        outputs = [("y", F16, [2, 3, 5, 5])]
        feed = {k: v.astype(np.float16) for k, v in feed.items()}
    model = make_model(nodes, inputs, outputs, inits)
    check_unfused(model, feed, "FusedMatMul", rtol=1e-3 if case == "float16" else 1e-5)


def test_disabled_by_name():
    assert ops(session(_sdpa_scores(), disabled_optimizers=["MatMulScaleFusion"])) == ["Mul", "Mul", "MatMul"]
