"""The CPU provider's faster kernel bodies (the float32 erfc fit behind GELU, the one-pass GELU
family, in-place layer norms and attention, broadcast MatMulNBits dequantization) against
onnxruntime's CPU provider and float64 formulas, at transformer block sizes large enough to take
the fast paths ((4, 32, 128) = 16384 elements; the erfc fit starts at 2048)."""
import math

import numpy as np
import onnxruntime
import pytest
import scipy.special
from onnx import TensorProto, helper

import ortgpu
from ortgpu.providers.kernels.activations import _FAST_ERFC_MIN, _erfc_f32

MS = "com.microsoft"
F32, F16 = np.float32, np.float16
_TYPES = {F32: TensorProto.FLOAT, F16: TensorProto.FLOAT16, np.int32: TensorProto.INT32,
          np.uint8: TensorProto.UINT8}


def _model(node, feeds, outputs, opset=17):
    inputs = [helper.make_tensor_value_info(k, _TYPES[v.dtype.type], list(v.shape)) for k, v in feeds.items()]
    outs = [helper.make_tensor_value_info(name, elem, None) for name, elem in outputs]
    graph = helper.make_graph([node], "fast_path", inputs, outs)
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", opset),
                                                                  helper.make_opsetid(MS, 1)])


def _both(model, feeds):
    data = model.SerializeToString()
    mine = ortgpu.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)
    theirs = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)
    return mine, theirs


def _gelu_exact(x):
    x = x.astype(np.float64)
    return 0.5 * x * scipy.special.erfc(-x / math.sqrt(2))


def _gelu_tanh64(x):
    x = x.astype(np.float64)
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def test_erfc_fit_error_bounds():
    """The documented error of the float32 erfc fit against float64 erfc, in float32 ulps."""
    x = np.linspace(-12, 12, 1_000_001, dtype=F32)
    got = _erfc_f32(x).astype(np.float64)
    ref = scipy.special.erfc(x.astype(np.float64))
    ulp = 2.0 ** -23
    for floor, bound in ((1e-2, 5.5), (1e-7, 11.5)):
        m = ref > floor
        assert (np.abs(got - ref)[m] / ref[m]).max() < bound * ulp, floor
    assert np.all(np.isfinite(got)) and np.all(got >= 0) and np.all(got <= 2)
    assert _erfc_f32(np.array([0.0], F32))[0] == pytest.approx(1.0, rel=1e-7)
    # past one cache-sized chunk, a shape that is no multiple of it: same values as element-wise
    block = x[:3 * 20011].reshape(3, 20011)
    np.testing.assert_array_equal(_erfc_f32(block), np.concatenate([_erfc_f32(r) for r in block]).reshape(3, 20011))


@pytest.mark.parametrize("dtype", [F32, F16])
@pytest.mark.parametrize("op", ["BiasGelu", "FastGelu", "FastGeluNoBias", "Gelu"])
def test_gelu_family_large_blocks(op, dtype):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((4, 32, 128)) * 3).astype(dtype)
    x[0, 0, :8] = [-12, -9, -6, -3, 0, 3, 6, 12]
    b = (rng.standard_normal(128) * 0.5).astype(dtype)
    feeds = {"X": x} if op in ("FastGeluNoBias", "Gelu") else {"X": x, "B": b}
    node = helper.make_node(op.replace("NoBias", ""), list(feeds), ["Y"], domain=MS)
    elem = _TYPES[dtype]
    (mine,), (theirs,) = _both(_model(node, feeds, [("Y", elem)]), feeds)
    assert mine.dtype == dtype and mine.shape == x.shape
    tol = dict(rtol=1e-5, atol=2e-6) if dtype is F32 else dict(rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(mine.astype(np.float64), theirs.astype(np.float64), **tol)
    s = x.astype(np.float32) + (b.astype(np.float32) if "B" in feeds else 0)
    exact = _gelu_exact(s) if op in ("BiasGelu", "Gelu") else _gelu_tanh64(s)
    np.testing.assert_allclose(mine.astype(np.float64), exact, **tol)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_onnx_gelu_large_block(approximate):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((8, 512)) * 4).astype(F32)
    assert x.size >= _FAST_ERFC_MIN
    node = helper.make_node("Gelu", ["X"], ["Y"], approximate=approximate)
    (mine,), (theirs,) = _both(_model(node, {"X": x}, [("Y", TensorProto.FLOAT)], opset=20), {"X": x})
    np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=2e-6)
    exact = _gelu_exact(x) if approximate == "none" else _gelu_tanh64(x)
    np.testing.assert_allclose(mine, exact, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("dtype", [F32, F16])
def test_skip_layer_norm_all_outputs_inputs_untouched(dtype):
    rng = np.random.default_rng(3)
    feeds = {"input": rng.standard_normal((4, 32, 64)).astype(dtype),
             "skip": rng.standard_normal((4, 32, 64)).astype(dtype),
             "gamma": rng.standard_normal(64).astype(dtype), "beta": rng.standard_normal(64).astype(dtype),
             "bias": rng.standard_normal(64).astype(dtype)}
    kept = {k: v.copy() for k, v in feeds.items()}
    node = helper.make_node("SkipLayerNormalization", list(feeds), ["Y", "mean", "inv", "sum"],
                            domain=MS, epsilon=1e-5)
    elem = _TYPES[dtype]
    model = _model(node, feeds, [("Y", elem), ("mean", TensorProto.FLOAT), ("inv", TensorProto.FLOAT),
                                 ("sum", elem)])
    mine, theirs = _both(model, feeds)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype is F32 else dict(rtol=2e-3, atol=4e-3)
    for name, a, b in zip(("Y", "mean", "inv", "sum"), mine, theirs):
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), **tol, err_msg=name)
    for k, v in feeds.items():
        np.testing.assert_array_equal(v, kept[k], err_msg=f"input {k} was written")


@pytest.mark.parametrize("simplified", [False, True])
def test_layer_norm_1_input_untouched(simplified):
    """onnxruntime's LayerNormalization / SimplifiedLayerNormalization of opset < 17 over the
    last two axes: the scaling in place must not reach the caller's array."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 16, 48)).astype(F32)
    kept = x.copy()
    feeds = {"X": x, "S": rng.standard_normal((16, 48)).astype(F32)}
    op = "SimplifiedLayerNormalization" if simplified else "LayerNormalization"
    if not simplified:
        feeds["B"] = rng.standard_normal((16, 48)).astype(F32)
    node = helper.make_node(op, list(feeds), ["Y"], axis=-2, epsilon=1e-5)
    (mine,), (theirs,) = _both(_model(node, feeds, [("Y", TensorProto.FLOAT)], opset=16), feeds)
    np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(x, kept)


@pytest.mark.parametrize("dtype", [F32, F16])
@pytest.mark.parametrize("unidirectional", [0, 1])
def test_attention_block_with_mask(dtype, unidirectional):
    rng = np.random.default_rng(5)
    b, s, h, heads = 4, 32, 64, 4
    feeds = {"input": rng.standard_normal((b, s, h)).astype(dtype),
             "weights": (rng.standard_normal((h, 3 * h)) * 0.2).astype(dtype),
             "bias": rng.standard_normal(3 * h).astype(dtype),
             "mask_index": np.array([32, 20, 7, 32], np.int32)}
    node = helper.make_node("Attention", list(feeds), ["Y", "present"], domain=MS, num_heads=heads,
                            unidirectional=unidirectional)
    elem = _TYPES[dtype]
    mine, theirs = _both(_model(node, feeds, [("Y", elem), ("present", elem)]), feeds)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype is F32 else dict(rtol=5e-3, atol=5e-3)
    for a, t in zip(mine, theirs):
        assert a.dtype == dtype and a.shape == t.shape
        np.testing.assert_allclose(a.astype(np.float64), t.astype(np.float64), **tol)


@pytest.mark.parametrize("zero_points", [False, True])
def test_matmul_nbits_stacked_input(zero_points):
    """MatMulNBits with block parameters broadcast over each block, a 3-D A and a bias."""
    rng = np.random.default_rng(6)
    k, n, block = 96, 40, 32
    k_blocks = k // block
    feeds = {"A": rng.standard_normal((3, 5, k)).astype(F32),
             "B": rng.integers(0, 256, size=(n, k_blocks, block // 2), dtype=np.uint8),
             "scales": (rng.random(n * k_blocks) * 0.1 + 0.01).astype(F32)}
    inputs = ["A", "B", "scales"]
    if zero_points:
        feeds["zp"] = rng.integers(0, 256, size=(n * ((k_blocks + 1) // 2),), dtype=np.uint8)
        inputs.append("zp")
    else:
        inputs.append("")
    feeds["bias"] = rng.standard_normal(n).astype(F32)
    inputs += ["", "bias"]
    node = helper.make_node("MatMulNBits", inputs, ["Y"], domain=MS, K=k, N=n, bits=4, block_size=block)
    (mine,), (theirs,) = _both(_model(node, feeds, [("Y", TensorProto.FLOAT)]), feeds)
    assert mine.shape == (3, 5, n)
    np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("data_shape, index, axis", [((3, 4), -1, 1), ((5,), 2, 0), ((2, 3), -2, 0), ((2, 3), 3, 1)])
def test_gather_scalar_index(data_shape, index, axis):
    """Gather with one index (a shape computation's): the host fast path against onnxruntime,
    an index out of range included (both refuse it)."""
    data = np.arange(int(np.prod(data_shape)), dtype=np.int64).reshape(data_shape)
    feeds = {"d": data, "i": np.array(index, np.int64)}
    node = helper.make_node("Gather", ["d", "i"], ["y"], axis=axis)
    inputs = [helper.make_tensor_value_info("d", TensorProto.INT64, list(data_shape)),
              helper.make_tensor_value_info("i", TensorProto.INT64, [])]
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 13)])
    if not -data_shape[axis] <= index < data_shape[axis]:
        for session in (ortgpu.InferenceSession, onnxruntime.InferenceSession):
            with pytest.raises(Exception, match="out of|outside|range"):
                session(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
        return
    (mine,), (theirs,) = _both(model, feeds)
    assert mine.shape == theirs.shape and mine.dtype == theirs.dtype
    np.testing.assert_array_equal(mine, theirs)
