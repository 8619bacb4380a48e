"""Basic-level graph optimizations: each rewrite happens where its pattern matches, a
near-miss is left alone, and outputs equal the unoptimized session's (and onnxruntime's)."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortgpu

ort = pytest.importorskip("onnxruntime")


def _sessions(model, **kw):
    data = model.SerializeToString()
    off = ortgpu.SessionOptions()
    off.graph_optimization_level = ortgpu.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ortgpu.InferenceSession(data, **kw), ortgpu.InferenceSession(data, off)


def _ops(sess):
    return [op for _, op, _ in sess.get_provider_assignment()]


def _conv_bn_model(conv_output_also_graph_output=False, training=False):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "Bc")]
    for name, val in [("s", rng.random(4) + 0.5), ("b", rng.standard_normal(4)),
                      ("m", rng.standard_normal(4)), ("v", rng.random(4) + 0.1)]:
        inits.append(numpy_helper.from_array(val.astype(np.float32), name))
    bn_kw = {"epsilon": 1e-3}
    if training:
        bn_kw["training_mode"] = 1
    nodes = [helper.make_node("Conv", ["x", "W", "Bc"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"], **bn_kw),
             helper.make_node("Relu", ["y"], ["z"])]
    outs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)]
    if conv_output_also_graph_output:
        outs.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, None))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 15)], ir_version=8)


def test_conv_batchnorm_fuses_and_matches():
    model = _conv_bn_model()
    fused, plain = _sessions(model, disabled_optimizers=["ConvActivationFusion"])
    assert _ops(fused) == ["Conv", "Relu"]
    assert _ops(plain) == ["Conv", "BatchNormalization", "Relu"]
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for sess in (fused, plain):
        np.testing.assert_allclose(sess.run(None, {"x": x})[0], ref[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kw", [dict(conv_output_also_graph_output=True), dict(training=True)],
                         ids=["conv_output_used_elsewhere", "training_mode"])
def test_conv_batchnorm_near_misses_do_not_fuse(kw):
    fused, _ = _sessions(_conv_bn_model(**kw))
    assert "BatchNormalization" in _ops(fused)


def test_conv_batchnorm_fusion_can_be_disabled_by_name():
    sess = ortgpu.InferenceSession(_conv_bn_model().SerializeToString(), disabled_optimizers=["ConvBNFusion"])
    assert "BatchNormalization" in _ops(sess)


def _fold_model(overridable):
    nodes = [helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.float32([2.0]))),
             helper.make_node("Mul", ["k", "c"], ["kc"]),
             helper.make_node("Add", ["x", "kc"], ["y"]),
             helper.make_node("RandomUniformLike", ["x"], ["r"], seed=1.0),
             helper.make_node("Mul", ["r", "k"], ["rk"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])]
    if overridable:
        inputs.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, [3]))
    g = helper.make_graph(nodes, "g", inputs,
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3]),
                           helper.make_tensor_value_info("rk", TensorProto.FLOAT, [3])],
                          [numpy_helper.from_array(np.float32([1, 2, 3]), "c")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_constant_folding_folds_constants_only():
    folded, plain = _sessions(_fold_model(overridable=False))
    assert _ops(folded) == ["Add", "RandomUniformLike", "Mul"]  # the random op and its user stay
    assert len(_ops(plain)) == 5
    x = np.float32([1, 1, 1])
    np.testing.assert_array_equal(folded.run(["y"], {"x": x})[0], plain.run(["y"], {"x": x})[0])


def test_constant_folding_leaves_overridable_initializers_alone():
    sess, _ = _sessions(_fold_model(overridable=True))
    assert "Mul" in _ops(sess)[:2]
    y = sess.run(["y"], {"x": np.float32([0, 0, 0]), "c": np.float32([5, 5, 5])})[0]
    np.testing.assert_array_equal(y, [10, 10, 10])
