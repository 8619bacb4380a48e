"""ConvBNFusion: Conv + inference BatchNormalization becomes one Conv; near-misses stay, and
outputs equal the unoptimized session's and onnxruntime's."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortgpu
from support.pass_check import optimized_and_plain, step_ops

ort = pytest.importorskip("onnxruntime")


def _conv_bn_model(conv_output_also_graph_output=False, training=False, mean_is_input=False):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "Bc")]
    for name, val in [("s", rng.random(4) + 0.5), ("b", rng.standard_normal(4)),
                      ("m", rng.standard_normal(4)), ("v", rng.random(4) + 0.1)]:
        if not (mean_is_input and name == "m"):
            inits.append(numpy_helper.from_array(val.astype(np.float32), name))
    bn_kw = {"epsilon": 1e-3}
    if training:
        bn_kw["training_mode"] = 1
    nodes = [helper.make_node("Conv", ["x", "W", "Bc"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"],
                              ["y", "rm", "rv"] if training else ["y"], **bn_kw),
             helper.make_node("Relu", ["y"], ["z"])]
    outs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)]
    if conv_output_also_graph_output:
        outs.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, None))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])]
    if mean_is_input:
        inputs.append(helper.make_tensor_value_info("m", TensorProto.FLOAT, [4]))
    g = helper.make_graph(nodes, "g", inputs, outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 15)], ir_version=8)


def test_conv_batchnorm_fuses_and_matches():
    model = _conv_bn_model()
    fused, plain = optimized_and_plain(model, disabled_optimizers=["ConvActivationFusion"])
    assert step_ops(fused) == ["Conv", "Relu"]
    assert step_ops(plain) == ["Conv", "BatchNormalization", "Relu"]
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for sess in (fused, plain):
        np.testing.assert_allclose(sess.run(None, {"x": x})[0], ref[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kw", [dict(conv_output_also_graph_output=True), dict(training=True),
                                dict(mean_is_input=True)],
                         ids=["conv_output_used_elsewhere", "training_mode", "non_constant_mean"])
def test_conv_batchnorm_near_misses_do_not_fuse(kw):
    # (BNActivationFusion would take the BatchNormalization that stays, with its Relu)
    fused, _ = optimized_and_plain(_conv_bn_model(**kw), disabled_optimizers=["BNActivationFusion"])
    assert "BatchNormalization" in step_ops(fused)


def test_conv_batchnorm_fusion_can_be_disabled_by_name():
    sess = ortgpu.InferenceSession(_conv_bn_model().SerializeToString(),
                                   disabled_optimizers=["ConvBNFusion", "BNActivationFusion"])
    assert "BatchNormalization" in step_ops(sess)
