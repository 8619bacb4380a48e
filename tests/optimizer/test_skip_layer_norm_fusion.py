"""SkipLayerNormFusion: residual Add (+ bias Add) + LayerNormalization, as in BERT and GPT-2."""
import numpy as np
import pytest
from onnx import helper

from support.fusion_cases import F16, F32, MS, check_fusion, check_unfused, make_model, ops, randn, session

pytest.importorskip("onnxruntime")

B, S, H = 2, 5, 16


def _model(bias=True, bias_first=True, sum_reused=False, axis=-1, stats_used=False, dtype=np.float32,
           opset=17, skip_shape=(B, S, H)):
    """LN(Add(Add(bias, MatMul(x, W)), residual)) (BERT) or LN(Add(h, residual)) with the sum
    read again (pre-LN GPT-2)."""
    t = F16 if dtype == np.float16 else F32
    inits = {"W": randn(H, H, seed=1, scale=0.3).astype(dtype), "gamma": (1 + randn(H, seed=2, scale=0.1)).astype(dtype),
             "beta": randn(H, seed=3, scale=0.1).astype(dtype)}
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"])]
    h = "h"
    if bias:
        inits["bias"] = randn(H, seed=4, scale=0.1).astype(dtype)
        nodes.append(helper.make_node("Add", ["bias", "h"] if bias_first else ["h", "bias"], ["hb"]))
        h = "hb"
    nodes.append(helper.make_node("Add", [h, "skip"], ["s"]))
    ln_out = ["y", "mean"] if stats_used else ["y"]
    nodes.append(helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ln_out, axis=axis, epsilon=1e-5))
    outputs = [("y", t, [B, S, H])]
    if sum_reused:
        nodes.append(helper.make_node("Add", ["s", "y"], ["z"]))
        outputs.append(("z", t, [B, S, H]))
    if stats_used:
        outputs.append(("mean", F32, None))
    return make_model(nodes, [("x", t, [B, S, H]), ("skip", t, list(skip_shape))], outputs, inits, opset=opset)


def _feed(dtype=np.float32, skip_shape=(B, S, H)):
    return {"x": randn(B, S, H, dtype=dtype), "skip": randn(*skip_shape, seed=5, dtype=dtype)}


@pytest.mark.parametrize("bias_first", [True, False])
def test_bias_and_residual_fuse(bias_first):
    sess = check_fusion(_model(bias_first=bias_first), _feed(), "SkipLayerNormalization", rtol=1e-4, atol=1e-5,
                        domain=MS)
    assert ops(sess) == ["MatMul", "SkipLayerNormalization"]
    node = sess._core.plan.graph.nodes[1]
    assert len(node.inputs) == 5 and node.outputs == ["y"]


def test_sum_read_again_becomes_the_sum_output():
    """onnxruntime's op gives the sum as its fourth output (input_skip_bias_sum)."""
    sess = check_fusion(_model(bias=False, sum_reused=True), _feed(), "SkipLayerNormalization", rtol=1e-4, atol=1e-5,
                        domain=MS)
    node = next(n for n in sess._core.plan.graph.nodes if n.op_type == "SkipLayerNormalization")
    assert node.outputs == ["y", "", "", "s"] and len(node.inputs) == 4


def test_broadcast_skip_with_its_sum_read_keeps_the_ortgpu_op():
    """A skip broadcast over the batch is not onnxruntime's form: ortgpu's op (outputs y, sum)."""
    sess = check_fusion(_model(bias=False, sum_reused=True, skip_shape=(1, S, H)), _feed(skip_shape=(1, S, H)),
                        "SkipLayerNormalization", rtol=1e-4, atol=1e-5, domain="ortgpu")
    node = next(n for n in sess._core.plan.graph.nodes if n.op_type == "SkipLayerNormalization")
    assert node.outputs == ["y", "s"]


def test_broadcast_skip_fuses_and_matches():
    feed = _feed(skip_shape=(1, S, H))
    check_fusion(_model(skip_shape=(1, S, H)), feed, "SkipLayerNormalization", rtol=1e-4, atol=1e-5,
                 domain="ortgpu")


def test_float16():
    check_fusion(_model(dtype=np.float16), _feed(np.float16), "SkipLayerNormalization", rtol=3e-3, atol=3e-3,
                 domain="ortgpu")


def test_after_layer_norm_fusion_below_opset_17():
    """The ai.onnx LayerNormalization below opset 17 (from LayerNormFusion) is extended too."""
    from test_layer_norm_fusion import _decomposed
    model = _decomposed(opset=12)
    g = model.graph
    g.node[0].input[0] = "xs"
    g.node[1].input[0] = "xs"
    g.node.insert(0, helper.make_node("Add", ["x", "skip"], ["xs"]))
    g.input.append(helper.make_tensor_value_info("skip", F32, [2, 4, 16]))
    feed = {"x": randn(2, 4, 16), "skip": randn(2, 4, 16, seed=9)}
    check_fusion(model, feed, "SkipLayerNormalization", rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", ["axis_not_last", "statistics_used"])
def test_near_misses_do_not_fuse(case):
    model = _model(axis=-2) if case == "axis_not_last" else _model(stats_used=True)
    if case == "axis_not_last":  # gamma of shape (H,) does not fit axis -2: use (S, H)
        inits = {i.name: i for i in model.graph.initializer}
        for name in ("gamma", "beta"):
            inits[name].CopyFrom(helper.make_tensor(name, F32, [S, H], randn(S, H, seed=7).ravel()))
    check_unfused(model, _feed(), "SkipLayerNormalization", rtol=1e-4, atol=1e-5)


def test_disabled_by_name():
    assert "LayerNormalization" in ops(session(_model(), disabled_optimizers=["SkipLayerNormFusion"]))
