"""ConvAddActivationFusion: Activation(Add(Conv(x), z)) becomes FusedConv with z as its fourth
input (ResNet's residual blocks); an Add whose sum is read elsewhere stays."""
import pytest
from onnx import helper

from support.fusion_cases import F32, assert_close, check_fusion, make_model, onnxruntime_run, ops, randn, session
from test_conv_activation_fusion import ACTIVATIONS

pytest.importorskip("onnxruntime")


def _residual_block(add_out_used=False, z_first=False, act="Relu", add="Add"):
    """Relu(Add(Conv(x), shortcut)) with the shortcut a 1x1 Conv + Relu of x (ResNet); `add`
    "Sum" writes the Add as a Sum (Caffe2's exports), "Sum3" as a Sum that also adds x."""
    inits = {"W": randn(4, 3, 3, 3, seed=1, scale=0.4), "B": randn(4, seed=2), "Ws": randn(4, 3, 1, 1, seed=3)}
    nodes = [helper.make_node("Conv", ["x", "Ws"], ["s0"]), helper.make_node("Relu", ["s0"], ["short"]),
             helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node(add[:3], (["short", "c"] if z_first else ["c", "short"]) + (["s0"] if add == "Sum3" else []),
                              ["a"])]
    nodes += ACTIVATIONS[act][0]("a", "y")
    outs = [("y", F32, [1, 4, 6, 7])] + ([("a", F32, [1, 4, 6, 7])] if add_out_used else [])
    return make_model(nodes, [("x", F32, [1, 3, 6, 7])], outs, inits, opset=ACTIVATIONS[act][1])


@pytest.mark.parametrize("z_first", [False, True])
@pytest.mark.parametrize("act", ["Relu", "Clip_inputs"])
def test_conv_add_activation_fuses_with_the_residual_as_z(z_first, act):
    sess = check_fusion(_residual_block(z_first=z_first, act=act), {"x": randn(1, 3, 6, 7)}, "FusedConv",
                        count=2, domain="com.microsoft")
    assert ops(sess) == ["FusedConv", "FusedConv"]
    z_node = [n for n in sess._core.plan.graph.nodes if len(n.inputs) == 4]
    assert len(z_node) == 1 and z_node[0].inputs[3] == "short"


@pytest.mark.parametrize("z_first", [False, True])
def test_a_two_input_sum_fuses_as_the_add_does(z_first):
    sess = check_fusion(_residual_block(z_first=z_first, add="Sum"), {"x": randn(1, 3, 6, 7)}, "FusedConv",
                        count=2, domain="com.microsoft")
    assert ops(sess) == ["FusedConv", "FusedConv"]


def test_a_sum_of_three_inputs_stays():
    model, feed = _residual_block(add="Sum3"), {"x": randn(1, 3, 6, 7)}
    sess = session(model)
    assert "Sum" in ops(sess)
    assert_close(sess.run(None, feed), onnxruntime_run(model, feed), 1e-5, 1e-6)


def test_broadcast_residual_keeps_the_ortgpu_op():
    """onnxruntime's FusedConv takes a Z of the result's shape only: a broadcast Z (a per-channel
    shift) makes ortgpu's FusedConv, which broadcasts as the Add did."""
    inits = {"W": randn(4, 3, 3, 3, seed=1, scale=0.4), "Z": randn(1, 4, 1, 1, seed=4)}
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Add", ["c", "Z"], ["a"]),
             helper.make_node("Relu", ["a"], ["y"])]
    model = make_model(nodes, [("x", F32, [1, 3, 6, 7])], [("y", F32, [1, 4, 6, 7])], inits, opset=13)
    sess = check_fusion(model, {"x": randn(1, 3, 6, 7)}, "FusedConv", domain="ortgpu",
                        disabled_optimizers=["ConvAddFusion"])
    assert sess._core.plan.graph.nodes[0].inputs[3] == "Z"


def test_conv_add_whose_sum_is_read_elsewhere_keeps_the_add():
    model, feed = _residual_block(add_out_used=True), {"x": randn(1, 3, 6, 7)}
    sess = session(model)
    assert ops(sess).count("Add") == 1 and ops(sess).count("FusedConv") == 1   # only the shortcut fuses
    assert_close(sess.run(None, feed), onnxruntime_run(model, feed), 1e-5, 1e-6)
    assert "Add" in ops(session(_residual_block(), disabled_optimizers=["ConvAddActivationFusion"]))
