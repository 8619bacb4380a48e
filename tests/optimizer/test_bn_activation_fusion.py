"""BNActivationFusion: an inference BatchNormalization followed by any foldable activation
becomes ortgpu::FusedBatchNormalization (a function body onnxruntime runs from a saved model);
float16, opset 7 (is_test/spatial era), NaN inputs and the compiled/NumPy bodies agree with
onnxruntime; training mode, a BatchNormalization read elsewhere and a provider without the
kernel keep the pattern."""
import numpy as np
import pytest
from onnx import helper

import ortgpu
from support.fusion_cases import F16, F32, assert_close, check_fusion, check_unfused, make_model, onnxruntime_run, ops, \
    randn, session
from test_conv_activation_fusion import ACTIVATIONS, _NoFusedKernels

pytest.importorskip("onnxruntime")

C = 5


def _bn(act, opset, dtype=np.float32, bn_out_used=False, training=False):
    t = F16 if dtype == np.float16 else F32
    rng = np.random.default_rng(4)
    inits = {"s": rng.standard_normal(C), "b": rng.standard_normal(C), "m": rng.standard_normal(C),
             "v": rng.random(C) + 0.3}
    inits = {k: v.astype(dtype) for k, v in inits.items()}
    attrs = {"training_mode": 1} if training else {}
    outs_bn = ["c", "rm", "rv"] if training else ["c"]
    nodes = [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], outs_bn, epsilon=1e-3, **attrs)]
    nodes += act("c", "y")
    outs = [("y", t, [2, C, 4, 6])] + ([("c", t, [2, C, 4, 6])] if bn_out_used else [])
    return make_model(nodes, [("x", t, [2, C, 4, 6])], outs, inits, opset=opset)


@pytest.mark.parametrize("name", [n for n in ACTIVATIONS if n != "Clip_attributes"])
def test_batchnormalization_with_activation_fuses(name):
    act, opset = ACTIVATIONS[name]
    sess = check_fusion(_bn(act, max(opset, 9)), {"x": randn(2, C, 4, 6, scale=2)}, "FusedBatchNormalization",
                        domain="ortgpu")
    assert ops(sess) == ["FusedBatchNormalization"]


def test_opset_7_with_clip_attributes():
    act, _ = ACTIVATIONS["Clip_attributes"]
    check_fusion(_bn(act, 7), {"x": randn(2, C, 4, 6, scale=2)}, "FusedBatchNormalization", domain="ortgpu")


@pytest.mark.parametrize("jit_on", ["1", "0"])
def test_relu_in_the_same_pass_keeps_nan_and_matches_in_float16(jit_on, monkeypatch):
    monkeypatch.setenv("ORTGPU_JIT", jit_on)
    x = randn(2, C, 4, 6, scale=3)
    x[0, 1, 2, :3] = np.nan
    check_fusion(_bn(ACTIVATIONS["Relu"][0], 15), {"x": x}, "FusedBatchNormalization", domain="ortgpu")
    check_fusion(_bn(ACTIVATIONS["Relu"][0], 15, dtype=np.float16), {"x": x.astype(np.float16)},
                 "FusedBatchNormalization", rtol=2e-3, atol=2e-3, domain="ortgpu")


@pytest.mark.parametrize("case", ["bn_output_used", "training_mode", "not_an_activation"])
def test_near_misses_do_not_fuse(case):
    if case == "bn_output_used":
        model = _bn(ACTIVATIONS["Relu"][0], 15, bn_out_used=True)
    elif case == "training_mode":
        model = _bn(ACTIVATIONS["Relu"][0], 15, training=True)
        assert "FusedBatchNormalization" not in ops(session(model))
        return  # onnxruntime's CPU provider has no training-mode BatchNormalization to compare with
    else:
        model = _bn(lambda y, z: [helper.make_node("Elu", [y], [z])], 15)
    check_unfused(model, {"x": randn(2, C, 4, 6)}, "FusedBatchNormalization")


def test_a_provider_without_the_fused_kernel_keeps_the_pattern():
    model = _bn(ACTIVATIONS["Relu"][0], 15)
    sess = ortgpu.InferenceSession(model.SerializeToString(), providers=[_NoFusedKernels()])
    assert ops(sess) == ["BatchNormalization", "Relu"]


def test_disabled_by_name():
    model = _bn(ACTIVATIONS["Relu"][0], 15)
    assert ops(session(model, disabled_optimizers=["BNActivationFusion"])) == ["BatchNormalization", "Relu"]
    feed = {"x": randn(2, C, 4, 6)}
    assert_close(session(model).run(None, feed), onnxruntime_run(model, feed), 1e-5, 1e-6)
