"""The fused ops' kernels beyond the pattern tests: on the device test double (the shared
kernels on a CuPy-like array module), the CPU-checkable parts of the CUDA kernels, and the
errors a bad input gets."""
import math

import numpy as np
import pytest
from onnx import helper

import ortgpu
from support.device_double import FakeDeviceExecutionProvider
from support.fusion_cases import F32, assert_close, make_model, ops, randn, session
from ortgpu.capi.onnxruntime_pybind11_state import RuntimeException
from ortgpu.providers.cpu import CPUExecutionProvider
from ortgpu.providers.cuda import attention as cuda_attention
from ortgpu.providers.cuda import fused as cuda_fused
from ortgpu.providers.cuda.kernels import activations as raw_act
from ortgpu.providers.kernels import fused_attention
from ortgpu.providers.kernels.normalization import softmax

import test_attention_fusion as att
import test_bias_gelu_fusion as bg
import test_conv_activation_fusion as ca
import test_gelu_fusion as gelu
import test_gemm_activation_fusion as ga
import test_layer_norm_fusion as lnf
import test_skip_layer_norm_fusion as sln

CASES = {   # name: (model, feed, fused op)
    "attention_bert": lambda: (att._bert(), att._feed(), "Attention"),
    "attention_gpt2": lambda: (att._gpt2(), att._feed(past=True), "Attention"),
    "gelu": lambda: (gelu._model(gelu._erf_gelu()), {"x": randn(2, 5, 8)}, "Gelu"),
    "fast_gelu": lambda: (gelu._model(gelu._tanh_gelu()), {"x": randn(2, 5, 8)}, "FastGelu"),
    "bias_gelu": lambda: (bg._model(gelu._erf_gelu()), bg._feed(), "BiasGelu"),
    "layer_norm": lambda: (lnf._decomposed(), {"x": randn(*lnf.SHAPE)}, "LayerNormalization"),
    "skip_layer_norm": lambda: (sln._model(sum_reused=True), sln._feed(), "SkipLayerNormalization"),
    "fused_conv_clip": lambda: (ca._conv(ca.ACTIVATIONS["Clip_inputs"][0], 13), {"x": randn(1, 3, 6, 7)}, "FusedConv"),
    "fused_gemm_hardsigmoid": lambda: (ga._gemm(ca.ACTIVATIONS["HardSigmoid"][0], 13), {"x": randn(3, 6)}, "FusedGemm"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_shared_kernels_run_on_the_device_double(name):
    """Fused on a device provider (its placement asks for the fused kernel there), the same
    outputs as on the CPU: the shared kernels never pull a device value to the host."""
    model, feed, op = CASES[name]()
    dev = ortgpu.InferenceSession(model.SerializeToString(),
                                  providers=[FakeDeviceExecutionProvider(), CPUExecutionProvider()])
    placed = {o: p for _, o, p in dev.get_provider_assignment()}
    assert placed[op] == FakeDeviceExecutionProvider.name
    assert_close(dev.run(None, feed), session(model).run(None, feed), 1e-6, 1e-6)


@pytest.mark.parametrize("activation,params", [
    ("Relu", []), ("LeakyRelu", [0.2]), ("Sigmoid", []), ("Tanh", []), ("HardSigmoid", [0.3, 0.4]),
    ("HardSwish", []), ("Clip", [-math.inf, 6.0]), ("Clip", [0.0, math.inf])])
def test_cuda_activation_launch_names_a_raw_kernel_with_its_parameters(activation, params):
    plan = cuda_fused.activation_launch(activation, params)
    if activation == "Clip":
        assert plan == ("clip", None if params[0] == -math.inf else params[0],
                        None if params[1] == math.inf else params[1])
    else:
        assert plan[0] == "unary" and plan[1] in raw_act.OPS
        assert list(plan[2:4])[:len(params)] == params


def test_activation_with_wrong_parameters_is_a_clear_error():
    with pytest.raises(ValueError, match="LeakyRelu.*1 activation_params, got 2"):
        cuda_fused.activation_launch("LeakyRelu", [0.1, 0.2])
    with pytest.raises(ValueError, match="unknown activation 'Swish'"):
        cuda_fused.activation_launch("Swish", [])


@pytest.mark.parametrize("with_bias", [True, False])
def test_cuda_attention_core_matches_the_shared_kernel(with_bias):
    """The GEMM + softmax path of the CUDA kernel, with NumPy stand-ins for cuBLAS and the raw
    softmax, against the shared kernel."""
    b, s, n, d, p = 2, 5, 3, 4, 6
    x, w, bias = randn(b, s, n * d, seed=1), randn(n * d, 3 * n * d, seed=2, scale=0.3), randn(3 * n * d, seed=3)
    past_k, past_v = randn(b, n, p, d, seed=4), randn(b, n, p, d, seed=5)
    mask = randn(b, 1, 1, p + s, seed=6) if with_bias else None
    ctx = ortgpu.providers.registry.KernelContext(np, "CPUExecutionProvider", num_outputs=3)
    want = fused_attention.Attention(ctx, x, w, bias, mask, past_k, past_v, num_heads=n, scale=0.3)
    q, k, v = fused_attention.split_heads(x @ w + bias, b, s, n, d)
    k, v = np.concatenate([past_k, k], axis=2), np.concatenate([past_v, v], axis=2)
    got = cuda_attention.attention_core(np, q, k, v, mask, 0.3, lambda a, c, alpha: (a @ c) * np.float32(alpha),
                                        lambda rows: softmax(np, rows, (1,)))
    np.testing.assert_allclose(got, want[0], rtol=1e-5, atol=1e-6)


def test_cuda_sdpa_rules():
    q = np.zeros((2, 4, 5, 64), np.float16)
    assert cuda_attention.sdpa_supported(q, q, q, None)
    assert not cuda_attention.sdpa_supported(q.astype(np.float32), q, q, None)       # float32: GEMM path
    assert not cuda_attention.sdpa_supported(np.zeros((2, 4, 5, 12), np.float16), q, q, None)  # D % 8
    assert cuda_attention.sdpa_bias_shape((2, 1, 1, 7), 2, 4, 5, 7) == [2, 1, 5, 7]
    with pytest.raises(ValueError, match="does not broadcast"):
        cuda_attention.sdpa_bias_shape((3, 1, 1, 7), 2, 4, 5, 7)


def test_attention_with_a_bad_weight_fails_naming_the_input():
    nodes = [helper.make_node("Attention", ["x", "w"], ["y", "", ""], domain="ortgpu", num_heads=2, scale=1.0)]
    model = make_model(nodes, [("x", F32, [1, 3, 4])], [("y", F32, None)], {"w": randn(4, 10)})
    model.opset_import.append(helper.make_opsetid("ortgpu", 1))
    sess = ortgpu.InferenceSession(model.SerializeToString())
    with pytest.raises(RuntimeException, match="weight must be"):
        sess.run(None, {"x": randn(1, 3, 4)})
    assert ops(sess) == ["Attention"]


def test_skip_layer_norm_with_a_bad_gamma_fails_naming_it():
    nodes = [helper.make_node("SkipLayerNormalization", ["x", "s", "g"], ["y", ""], domain="ortgpu")]
    model = make_model(nodes, [("x", F32, [2, 4]), ("s", F32, [2, 4])], [("y", F32, None)], {"g": randn(3)})
    model.opset_import.append(helper.make_opsetid("ortgpu", 1))
    with pytest.raises(RuntimeException, match="gamma has shape"):
        ortgpu.InferenceSession(model.SerializeToString()).run(None, {"x": randn(2, 4), "s": randn(2, 4)})


# ------------------------------------------------------------- the CUDA kernels under onnxruntime's names

def _ctx(op, outputs=1, present=None):
    from ortgpu.providers.registry import KernelContext  # noqa: PLC0415
    return KernelContext(np, "cuda", op, op, 1, outputs, tuple(present or (True,) * outputs))


def _contrib(op):
    from ortgpu.providers.registry import lookup  # noqa: PLC0415
    return lookup(op, "com.microsoft", 1, ("shared",)).fn


def _cuda_ms(op):
    from ortgpu.providers.registry import registered  # noqa: PLC0415
    return next(k.fn for k in registered() if (k.op_type, k.domain, k.provider) == (op, "com.microsoft", "cuda"))


@pytest.mark.parametrize("activation,alpha,beta", [("LeakyRelu", 0.3, None), ("HardSigmoid", 0.3, 0.6),
                                                   ("HardSigmoid", None, None), ("Tanh", None, None)])
def test_cuda_fused_gemm_under_onnxruntime_name_maps_activation_alpha_and_beta(activation, alpha, beta, monkeypatch):
    """The CUDA provider's com.microsoft FusedGemm (the ortgpu kernel behind an adapter) equals
    the contrib CPU kernel, which tests/contrib checks against onnxruntime (cuBLAS replaced by
    the shared Gemm, the rest as on the device)."""
    from ortgpu.providers.kernels import linalg  # noqa: PLC0415
    monkeypatch.setattr(cuda_fused.blas, "Gemm", linalg.Gemm)
    a, b, c = randn(3, 4, seed=1, scale=3), randn(4, 5, seed=2), randn(5, seed=3)
    kw = {k: v for k, v in (("activation_alpha", alpha), ("activation_beta", beta)) if v is not None}
    got = _cuda_ms("FusedGemm")(_ctx("FusedGemm"), a, b, c, activation=activation, **kw)
    want = _contrib("FusedGemm")(_ctx("FusedGemm"), a, b, c, activation=activation, **kw)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("present", [(True,), (True, False, False, True), (True, True, True, True)])
def test_cuda_skip_layer_norm_under_onnxruntime_name_puts_the_sum_last(present):
    x, skip = randn(2, 3, 8, seed=1), randn(2, 3, 8, seed=2)
    gamma, beta, bias = randn(8, seed=3), randn(8, seed=4), randn(8, seed=5)
    got = _cuda_ms("SkipLayerNormalization")(_ctx("SkipLayerNormalization", len(present), present),
                                             x, skip, gamma, beta, bias, epsilon=1e-5)
    want = _contrib("SkipLayerNormalization")(_ctx("SkipLayerNormalization", len(present), present),
                                              x, skip, gamma, beta, bias, epsilon=1e-5)
    got, want = (got,) if len(present) == 1 else got, (want,) if len(present) == 1 else want
    for g, w, p in zip(got, want, present):
        if p:
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("form", ["plain", "attention_bias", "past", "mask_index"])
def test_cuda_attention_under_onnxruntime_name_stacks_past_and_present(form):
    """com.microsoft Attention on the CUDA provider: past (2, B, N, P, D) split for the ortgpu
    kernel and present stacked back; forms the adapter does not take run the contrib kernel."""
    b, s, h, n, p = 2, 3, 8, 2, 4
    x, w, bias = randn(b, s, h, seed=1), randn(h, 3 * h, seed=2, scale=0.4), randn(3 * h, seed=3)
    past = randn(2, b, n, p, h // n, seed=4) if form == "past" else None
    ab = randn(b, 1, s, s, seed=5) if form == "attention_bias" else None
    mask = np.array([3, 2], np.int32) if form == "mask_index" else None
    ctx = lambda: _ctx("Attention", 2)  # noqa: E731
    got = _cuda_ms("Attention")(ctx(), x, w, bias, mask, past, ab, num_heads=n)
    want = _contrib("Attention")(ctx(), x, w, bias, mask, past, ab, num_heads=n)
    for g, wv in zip(got, want):
        np.testing.assert_allclose(g, wv, rtol=1e-5, atol=1e-5)
