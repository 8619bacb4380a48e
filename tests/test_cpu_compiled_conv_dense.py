"""The compiled parts of the dense (non-depthwise) convolutions and of BatchNormalization
(providers/cpu/conv_compiled.py's bias + residual + activation pass and kn2row shifted sum,
providers/cpu/batchnorm_compiled.py) against onnxruntime and against ortgpu's NumPy bodies
(ORTGPU_JIT=0): groups, strides, dilations, pads, batch > 1 and every FusedConv activation."""
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import ortgpu
from ortgpu.providers.cpu import batchnorm_compiled, conv_compiled, jit

pytestmark = pytest.mark.skipif(not jit.enabled(), reason="numba is not installed or ORTGPU_JIT=0")

CONVS = [  # (x shape, M, kernel, strides, dilations, pads, group)
    ((1, 8, 12, 20), 8, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1),       # M == C, im2col (small map)
    ((1, 4, 48, 48), 4, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1),       # M == C on 2304 pixels: kn2row
    ((2, 12, 9, 11), 5, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1),       # M < C: kn2row, batch 2
    ((1, 10, 13, 17), 4, (3, 2), (1, 1), (2, 1), (2, 0, 1, 1), 1),      # kn2row, dilated, uneven pads
    ((2, 3, 15, 14), 16, (7, 7), (2, 2), (1, 1), (3, 3, 3, 3), 1),      # a stem: stride 2, few channels
    ((1, 6, 10, 11), 9, (3, 3), (2, 1), (1, 2), (0, 2, 1, 0), 3),       # groups of 2 channels
    ((2, 24, 7, 9), 36, (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), 4),       # grouped 1x1 (ShuffleNet)
    ((1, 16, 9, 9), 32, (1, 1), (2, 2), (1, 1), (0, 0, 0, 0), 1),       # strided 1x1
]

ACTIVATIONS = [  # (op, attributes, extra constant inputs)
    ("Relu", {}, ()), ("LeakyRelu", {"alpha": 0.1}, ()), ("Sigmoid", {}, ()), ("Tanh", {}, ()),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, ()), ("HardSwish", {}, ()), ("Clip", {}, (-0.5, 0.7)),
]


def tensor(name, a):
    return helper.make_tensor(name, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape, a.ravel())


def conv_model(shape, m, kernel, strides, dilations, pads, group, act=None, bias=True, residual=False,
               elem=TensorProto.FLOAT):
    """Conv (+ Add of a second input) (+ an activation); ortgpu fuses these into one FusedConv."""
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    rng = np.random.default_rng(sum(shape) + m)
    w = (rng.standard_normal((m, shape[1] // group) + kernel) * 0.3).astype(dtype)
    inits = [tensor("w", w)]
    if bias:
        inits.append(tensor("b", rng.standard_normal(m).astype(dtype)))
    nodes = [helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["c"], group=group,
                              kernel_shape=list(kernel), strides=list(strides), dilations=list(dilations),
                              pads=list(pads))]
    inputs = [helper.make_tensor_value_info("x", elem, shape)]
    last = "c"
    if residual:
        nodes.append(helper.make_node("Add", ["c", "z"], ["s"]))
        inputs.append(helper.make_tensor_value_info("z", elem, None))
        last = "s"
    if act is not None:
        op, attrs, consts = act
        names = []
        for i, v in enumerate(consts):
            inits.append(tensor(f"k{i}", np.array(v, dtype)))
            names.append(f"k{i}")
        nodes.append(helper.make_node(op, [last] + names, ["y"], **attrs))
    else:
        nodes.append(helper.make_node("Identity", [last], ["y"]))
    g = helper.make_graph(nodes, "conv", inputs, [helper.make_tensor_value_info("y", elem, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10).SerializeToString()


def run_both(model, feed, monkeypatch, rtol=1e-4, atol=1e-4):
    """ortgpu's result (compiled bodies), checked against onnxruntime and against ortgpu's
    NumPy bodies; returns the compiled result."""
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    got = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    with monkeypatch.context() as mp:
        mp.setenv("ORTGPU_JIT", "0")
        assert not jit.enabled()
        numpy_body = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    np.testing.assert_allclose(got, numpy_body, rtol=1e-5, atol=1e-5)
    return got


def case_id(c):
    return "x".join(map(str, c[0])) + f"-m{c[1]}-k{c[2]}-s{c[3]}-d{c[4]}-g{c[6]}"


@pytest.mark.parametrize("case", CONVS, ids=case_id)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_conv_matches_onnxruntime_and_the_numpy_body(case, bias, monkeypatch):
    x = np.random.default_rng(1).standard_normal(case[0]).astype(np.float32)
    run_both(conv_model(*case, bias=bias), {"x": x}, monkeypatch)


@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: a[0])
@pytest.mark.parametrize("case", [CONVS[2], CONVS[4], CONVS[5]], ids=case_id)
def test_fused_activation_matches_onnxruntime_and_the_numpy_body(case, act, monkeypatch):
    x = np.random.default_rng(2).standard_normal(case[0]).astype(np.float32)
    calls = []
    real = conv_compiled.bias_activation

    def spy(y, bias, z, activation, params):
        calls.append(activation)
        return real(y, bias, z, activation, params)

    monkeypatch.setattr("ortgpu.providers.kernels.conv.bias_activation", spy)
    run_both(conv_model(*case, act=act), {"x": x}, monkeypatch)
    assert calls == [act[0]]  # the activation ran in the compiled pass, not after it


@pytest.mark.parametrize("z_shape", ["full", "per_channel", "wider"])
@pytest.mark.parametrize("act", [ACTIVATIONS[0], ACTIVATIONS[5]], ids=lambda a: a[0])
def test_residual_and_activation_in_the_compiled_pass(z_shape, act, monkeypatch):
    """Conv + Add(z) + activation (one FusedConv with Z), z the output's shape, broadcast to it,
    or one the output broadcasts to (a batch of 3 against the convolution's batch of 1)."""
    case = CONVS[3]
    x = np.random.default_rng(3).standard_normal(case[0]).astype(np.float32)
    y_shape = ortgpu.InferenceSession(conv_model(*case), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0].shape
    shapes = {"full": y_shape, "per_channel": (1, y_shape[1], 1, 1), "wider": (3,) + y_shape[1:]}
    z = np.random.default_rng(4).standard_normal(shapes[z_shape])  # "wider": Add broadcasts the conv
    run_both(conv_model(*case, act=act, residual=True), {"x": x, "z": z.astype(np.float32)}, monkeypatch)


def test_float64_conv_through_the_compiled_passes(monkeypatch):
    """onnxruntime's CPU Conv takes no float64: the oracle is the float32 model on onnxruntime
    (loosely) and ortgpu's NumPy body in float64 (tightly)."""
    case = CONVS[2]
    x = np.random.default_rng(5).standard_normal(case[0])
    act = ACTIVATIONS[5]
    got = ortgpu.InferenceSession(conv_model(*case, act=act, elem=TensorProto.DOUBLE),
                                  providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert got.dtype == np.float64
    want32 = ort.InferenceSession(conv_model(*case, act=act), providers=["CPUExecutionProvider"]).run(
        None, {"x": x.astype(np.float32)})[0]
    np.testing.assert_allclose(got, want32, rtol=1e-4, atol=1e-4)
    monkeypatch.setenv("ORTGPU_JIT", "0")
    numpy_body = ortgpu.InferenceSession(conv_model(*case, act=act, elem=TensorProto.DOUBLE),
                                         providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, numpy_body, rtol=1e-12, atol=1e-12)


def test_float16_conv_keeps_the_unfused_rounding(monkeypatch):
    """A float16 FusedConv rounds the convolution to float16 before the activation, as the
    unfused graph does: no compiled epilogue there, same result as the NumPy body."""
    case = CONVS[0]
    model = conv_model(*case, act=ACTIVATIONS[5], elem=TensorProto.FLOAT16)
    x = np.random.default_rng(6).standard_normal(case[0]).astype(np.float16)
    got = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    monkeypatch.setenv("ORTGPU_JIT", "0")
    numpy_body = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, numpy_body)


def batchnorm_model(shape, elem=TensorProto.FLOAT):
    c = shape[1]
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    rng = np.random.default_rng(c)
    params = [rng.standard_normal(c), rng.standard_normal(c), rng.standard_normal(c), rng.random(c) + 0.1]
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)
    g = helper.make_graph([node], "bn", [helper.make_tensor_value_info("x", elem, shape)],
                          [helper.make_tensor_value_info("y", elem, None)],
                          [tensor(n, p.astype(dtype)) for n, p in zip("sbmv", params)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 15)], ir_version=10).SerializeToString()


@pytest.mark.parametrize("shape", [(2, 7, 5, 6), (1, 32, 28, 28), (3, 4, 10), (2, 3, 2, 3, 4), (5, 6)])
def test_batchnorm_inference_matches_onnxruntime_and_the_numpy_body(shape, monkeypatch):
    calls = []
    real = batchnorm_compiled.scale_shift
    monkeypatch.setattr("ortgpu.providers.kernels.normalization.scale_shift",
                        lambda *a: calls.append(1) or real(*a))
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    so = ortgpu.SessionOptions()
    so.graph_optimization_level = ortgpu.GraphOptimizationLevel.ORT_DISABLE_ALL  # BN stays a node
    model = batchnorm_model(shape)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ortgpu.InferenceSession(model, so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert calls == [1]
    monkeypatch.setenv("ORTGPU_JIT", "0")
    numpy_body = ortgpu.InferenceSession(model, so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, numpy_body, rtol=1e-6, atol=1e-6)
