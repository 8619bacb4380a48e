"""The compiled pools (providers/cpu/pool_compiled.py) against onnxruntime and against ortgpu's
own NumPy bodies (ORTGPU_JIT=0), over the attributes pools take: pads (asymmetric, auto_pad),
ceil_mode, strides larger than the kernel, dilations, count_include_pad, batch > 1, 1-D and
3-D inputs, MaxPool's Indices, and the dtypes the kernels register."""
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import ortgpu
from ortgpu.providers.cpu import jit, pool_compiled
from ortgpu.threads import BUDGET, available_cores

pytestmark = pytest.mark.skipif(not jit.enabled(), reason="numba is not installed or ORTGPU_JIT=0")

WINDOWED = [  # (x shape, attributes)
    ((1, 3, 12, 12), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((2, 4, 11, 13), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 2, 1], "ceil_mode": 1}),
    ((1, 3, 13, 11), {"kernel_shape": [2, 2], "strides": [3, 3]}),
    ((1, 3, 13, 11), {"kernel_shape": [2, 3], "strides": [3, 4], "pads": [1, 0, 0, 1], "ceil_mode": 1}),
    ((2, 3, 10, 10), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "dilations": [2, 1]}),
    ((1, 2, 10, 9), {"kernel_shape": [3, 3], "strides": [2, 2], "dilations": [2, 2], "ceil_mode": 1}),
    ((1, 2, 9, 9), {"kernel_shape": [1, 3], "strides": [1, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 2, 9, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ((1, 2, 9, 8), {"kernel_shape": [3, 2], "auto_pad": "VALID"}),
    ((1, 4, 6, 6), {"kernel_shape": [7, 7], "pads": [0, 0, 1, 1]}),  # one window over the whole input
    ((2, 3, 5, 5), {"kernel_shape": [6, 6], "pads": [1, 0, 0, 1]}),
    ((1, 2, 7), {"kernel_shape": [7]}),
    ((1, 5, 3, 40), {"kernel_shape": [3, 2], "strides": [3, 2]}),
    ((2, 3, 20), {"kernel_shape": [3], "strides": [2], "pads": [1, 2]}),
    ((1, 2, 17), {"kernel_shape": [4], "strides": [3], "dilations": [2], "ceil_mode": 1}),
    ((1, 2, 6, 7, 8), {"kernel_shape": [3, 2, 2], "strides": [2, 1, 2], "pads": [1, 0, 1, 0, 1, 1]}),
    ((2, 1, 5, 5, 6), {"kernel_shape": [2, 3, 3], "pads": [1, 1, 1, 1, 1, 1], "ceil_mode": 1}),
]


def case_id(case):
    shape, attrs = case
    short = {"kernel_shape": "k", "strides": "s", "pads": "p", "dilations": "d", "ceil_mode": "ceil",
             "auto_pad": ""}
    return "x".join(map(str, shape)) + "-" + "-".join(
        short[k] + ("".join(map(str, v)) if isinstance(v, list) else str(v)) for k, v in attrs.items())


def pool_model(op, attrs, elem=TensorProto.FLOAT, indices=False):
    outs = ["y", "i"] if indices else ["y"]
    node = helper.make_node(op, ["x"], outs, **attrs)
    out_info = [helper.make_tensor_value_info("y", elem, None)]
    if indices:
        out_info.append(helper.make_tensor_value_info("i", TensorProto.INT64, None))
    g = helper.make_graph([node], op, [helper.make_tensor_value_info("x", elem, None)], out_info)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)], ir_version=10).SerializeToString()


@pytest.fixture
def compiled_calls(monkeypatch):
    """How many times a compiled pool body ran (so a test knows which body it checked)."""
    calls = []
    real = pool_compiled.split_range

    def counting(body, *args):
        calls.append(body.__name__)
        return real(body, *args)

    monkeypatch.setattr(pool_compiled, "split_range", counting)
    return calls


def run_ortgpu(model, x):
    return ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})


def run_onnxruntime(model, x):
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})


def compiled_and_numpy(model, x, monkeypatch, calls):
    """ortgpu's outputs with the compiled body (checked to have run) and with the NumPy body."""
    got = run_ortgpu(model, x)
    assert calls, "the compiled body did not run"
    ran = len(calls)
    monkeypatch.setenv("ORTGPU_JIT", "0")
    numpy_body = run_ortgpu(model, x)
    monkeypatch.delenv("ORTGPU_JIT")
    assert len(calls) == ran, "ORTGPU_JIT=0 still ran a compiled body"
    return got, numpy_body


def sample(shape, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed + sum(shape))
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("case", WINDOWED, ids=case_id)
def test_max_pool_matches_onnxruntime_and_the_numpy_body(case, monkeypatch, compiled_calls):
    shape, attrs = case
    model = pool_model("MaxPool", attrs)
    x = sample(shape)
    want = run_onnxruntime(model, x)[0]
    got, numpy_body = compiled_and_numpy(model, x, monkeypatch, compiled_calls)
    np.testing.assert_array_equal(got[0], want)
    np.testing.assert_array_equal(numpy_body[0], got[0])


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("case", WINDOWED, ids=case_id)
def test_average_pool_matches_onnxruntime_and_the_numpy_body(case, count_include_pad, monkeypatch,
                                                             compiled_calls):
    shape, attrs = case
    model = pool_model("AveragePool", dict(attrs, count_include_pad=count_include_pad))
    x = sample(shape)
    want = run_onnxruntime(model, x)[0]
    got, numpy_body = compiled_and_numpy(model, x, monkeypatch, compiled_calls)
    np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(numpy_body[0], got[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("storage_order", [0, 1])
@pytest.mark.parametrize("case", WINDOWED, ids=case_id)
def test_max_pool_indices_match_onnxruntime_and_the_numpy_body(case, storage_order, monkeypatch,
                                                               compiled_calls):
    shape, attrs = case
    if storage_order and len(shape) != 4:
        pytest.skip("onnxruntime takes storage_order for 2-D pools only")
    model = pool_model("MaxPool", dict(attrs, storage_order=storage_order), indices=True)
    x = sample(shape)
    want = run_onnxruntime(model, x)
    got, numpy_body = compiled_and_numpy(model, x, monkeypatch, compiled_calls)
    assert compiled_calls == ["_max_with_indices"]
    for a, b, c in zip(got, want, numpy_body):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(c, a)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int8, np.uint8])
def test_max_pool_in_other_dtypes(dtype, monkeypatch, compiled_calls):
    shape, attrs = WINDOWED[1]
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    model = pool_model("MaxPool", attrs, elem=elem)
    x = sample(shape, dtype)
    want = run_onnxruntime(model, x)[0]
    got, numpy_body = compiled_and_numpy(model, x, monkeypatch, compiled_calls)
    assert got[0].dtype == dtype
    np.testing.assert_array_equal(got[0], want)
    np.testing.assert_array_equal(numpy_body[0], got[0])


def test_average_pool_in_float64(monkeypatch, compiled_calls):
    """onnxruntime's CPU AveragePool takes no float64: the oracles are the float32 model on
    onnxruntime (loosely) and ortgpu's NumPy body in float64 (tightly)."""
    shape, attrs = WINDOWED[1]
    attrs = dict(attrs, count_include_pad=1)
    x = sample(shape, np.float64)
    got, numpy_body = compiled_and_numpy(pool_model("AveragePool", attrs, TensorProto.DOUBLE), x, monkeypatch,
                                         compiled_calls)
    assert got[0].dtype == np.float64
    np.testing.assert_allclose(got[0], run_onnxruntime(pool_model("AveragePool", attrs), x.astype(np.float32))[0],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(numpy_body[0], got[0], rtol=1e-13, atol=1e-13)


def test_average_pool_in_float16(monkeypatch, compiled_calls):
    shape, attrs = WINDOWED[3]
    model = pool_model("AveragePool", attrs, TensorProto.FLOAT16)
    x = sample(shape, np.float16)
    got, numpy_body = compiled_and_numpy(model, x, monkeypatch, compiled_calls)
    assert got[0].dtype == np.float16
    np.testing.assert_allclose(got[0].astype(np.float32), run_onnxruntime(model, x)[0].astype(np.float32),
                               rtol=2e-3, atol=2e-3)
    np.testing.assert_array_equal(numpy_body[0], got[0])


def test_windows_inside_the_pads_only(monkeypatch, compiled_calls):
    """A dilated window can straddle the whole input and read pads only: its max is the lowest
    value and its average 0, as in the NumPy body."""
    attrs = {"kernel_shape": [2, 2], "dilations": [4, 4], "pads": [1, 1, 1, 1]}  # reads -1 and 3 of 0..2
    x = sample((1, 2, 3, 3))
    for op, extra, outside in (("MaxPool", {}, -np.inf), ("AveragePool", {"count_include_pad": 0}, 0.0),
                               ("AveragePool", {"count_include_pad": 1}, 0.0)):
        got, numpy_body = compiled_and_numpy(pool_model(op, dict(attrs, **extra)), x, monkeypatch, compiled_calls)
        np.testing.assert_allclose(got[0], numpy_body[0], rtol=1e-6)
        assert got[0].shape == (1, 2, 1, 1) and (got[0] == outside).all()


def test_nan_propagates_as_in_the_numpy_body(monkeypatch, compiled_calls):
    """onnxruntime's MaxPool passes a NaN on in some windows and drops it in others; ortgpu's
    windowed and global max give NaN for any window holding one, in both bodies."""
    x = sample((1, 2, 8, 9))
    x[0, 0, 3, 4] = np.nan
    x[0, 1, 0, 0] = np.nan
    for op, attrs in (("MaxPool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}), ("GlobalMaxPool", {})):
        got, numpy_body = compiled_and_numpy(pool_model(op, attrs), x, monkeypatch, compiled_calls)
        np.testing.assert_array_equal(got[0], numpy_body[0])
        assert np.isnan(got[0]).sum() == (9 + 4 if op == "MaxPool" else 2)  # interior 3x3, corner 2x2


GLOBAL_SHAPES = [(2, 3, 5, 7), (1, 4, 3), (2, 3, 4, 4), (1, 2, 3, 4, 5), (1, 8, 40, 50), (6, 200, 3, 12)]


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("shape", GLOBAL_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_global_pools_match_onnxruntime_and_the_numpy_body(op, shape, monkeypatch, compiled_calls):
    model = pool_model(op, {})
    x = sample(shape) + 3.0  # an offset: a mean far from 0 shows a wrong divisor
    want = run_onnxruntime(model, x)[0]
    got, numpy_body = compiled_and_numpy(model, x, monkeypatch, compiled_calls)
    assert got[0].shape == want.shape
    np.testing.assert_allclose(got[0], want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(numpy_body[0], got[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pools_in_float64_and_float16(op, monkeypatch, compiled_calls):
    x64 = sample((2, 3, 7, 9), np.float64)
    got, numpy_body = compiled_and_numpy(pool_model(op, {}, TensorProto.DOUBLE), x64, monkeypatch, compiled_calls)
    assert got[0].dtype == np.float64
    np.testing.assert_allclose(numpy_body[0], got[0], rtol=1e-13, atol=1e-13)
    model16 = pool_model(op, {}, TensorProto.FLOAT16)
    x16 = x64.astype(np.float16)
    got16, numpy16 = compiled_and_numpy(model16, x16, monkeypatch, compiled_calls)
    assert got16[0].dtype == np.float16
    np.testing.assert_allclose(got16[0].astype(np.float32), run_onnxruntime(model16, x16)[0].astype(np.float32),
                               rtol=2e-3, atol=2e-3)
    np.testing.assert_array_equal(numpy16[0], got16[0])


@pytest.mark.skipif(available_cores() < 2, reason="one core: nothing to split over")
def test_work_split_over_threads_gives_the_one_thread_result(monkeypatch):
    """Planes split over two threads write the same values as one thread writing them all."""
    threads_used = []
    real = pool_compiled.split_range

    def spy(body, items, work, *args):
        threads_used.append(min(BUDGET.kernel_threads, items, int(items * work // jit.MIN_WORK_PER_THREAD) or 1))
        return real(body, items, work, *args)

    monkeypatch.setattr(pool_compiled, "split_range", spy)
    monkeypatch.setattr(jit, "MIN_WORK_PER_THREAD", 100_000)  # split this size: the point is the result
    x = sample((2, 64, 64, 64))
    for op, attrs in (("MaxPool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
                      ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]})):
        model = pool_model(op, attrs)
        threads_used.clear()
        outs = []
        for threads in (1, 2):
            so = ortgpu.SessionOptions()
            so.intra_op_num_threads = threads
            outs.append(ortgpu.InferenceSession(model, so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0])
        np.testing.assert_array_equal(outs[0], outs[1])
        assert threads_used == [1, 2]


@pytest.mark.parametrize("channels_last", [0, 1])
@pytest.mark.parametrize("op", ["QLinearAveragePool", "QLinearGlobalAveragePool"])
def test_quantized_pools_through_the_compiled_bodies(op, channels_last, monkeypatch, compiled_calls):
    """com.microsoft's quantized average pools dequantize, pool with the float bodies and
    requantize: within one quantization step of onnxruntime and of the NumPy bodies."""
    from support.quant_oracle import model  # noqa: PLC0415

    rng = np.random.default_rng(7)
    shape = (2, 9, 11, 24) if channels_last else (2, 24, 9, 11)
    feeds = {"X": rng.integers(0, 256, shape).astype(np.uint8)}
    consts = {"x_scale": np.float32(0.05), "x_zp": np.uint8(120), "y_scale": np.float32(0.03), "y_zp": np.uint8(128)}
    attrs = {"channels_last": channels_last}
    if op == "QLinearAveragePool":
        attrs.update(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 1], count_include_pad=1)
    m = model(op, ["X", "x_scale", "x_zp", "y_scale", "y_zp"], feeds, consts, attrs=attrs)
    want = ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    got = ortgpu.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    if op == "QLinearGlobalAveragePool" and channels_last:
        assert not compiled_calls  # NumPy's mean over the spatial axes runs along C already
    else:
        assert compiled_calls
    assert np.abs(got.astype(np.int64) - want).max() <= 1
    monkeypatch.setenv("ORTGPU_JIT", "0")
    numpy_body = ortgpu.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    assert np.abs(numpy_body.astype(np.int64) - got).max() <= 1  # sums in another order may round across a step
    assert (numpy_body == got).mean() > 0.99
