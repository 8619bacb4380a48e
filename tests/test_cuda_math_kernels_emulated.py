"""The CUDA provider's arithmetic kernels (elementwise_binary.cu, activations.cu, softmax.cu,
layernorm.cu, where.cu, cast.cu, roi_align.cu), run on the CPU by the host emulator
(``tests/support/cuda_emulator``), against the shared NumPy kernels.

Each case calls the registered ``provider="cuda"`` kernel through a KernelContext whose
array module is the emulator's ``cupy`` stand-in, so the launcher takes its real CuPy path
(``module.function`` -> ``cupy.RawModule`` of the real source text -> launch) and the
unchanged CUDA source runs, thread by thread, with barriers and shuffles.  Results are
compared with the shared NumPy kernels (onnxruntime where it is the better oracle) with the
tolerances of ``cuda_checks.py``, and every case checks which kernel was launched, so a
silent fallback to the shared kernel fails.  Inputs cover the float types and integer types
each launcher handles, broadcasting (scalar, row, column, 3-D+ with size-1 dims, more than 8
dims), strided, transposed and reversed views, empty tensors, NaN and infinities.

What this cannot show: anything about the GPU itself (memory model, warp scheduling, CuPy's
RawModule on a device, speed); the GPU tier (``test_cuda_math_kernels_gpu.py``) does.
"""
from __future__ import annotations

import itertools

import numpy as np
import onnxruntime
import pytest
from onnx import helper

from support.cuda_checks import F16, F32, F64, FLOATS, I32, I64, assert_close, random, tolerance
from support.cuda_emulator import EmulatedLaunchError, emulated_cuda  # noqa: F401  (the fixture)
from ortgpu.providers import registry
from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.registry import KernelContext

U8, I8, I16 = np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.int16)


def _ctx(xp, op, opset, num_outputs=1):
    return KernelContext(xp, "cuda" if xp is not np else "cpu", op_type=op, opset=opset,
                         num_outputs=num_outputs, output_present=(True,) * num_outputs)


def _host(v):
    if isinstance(v, tuple):
        return tuple(_host(x) for x in v)
    return v.get() if hasattr(v, "get") else np.asarray(v)


def run_cuda(emu, op, opset, inputs, attrs=None, num_outputs=1):
    """The CUDA provider's kernel on device copies of ``inputs`` (device arrays pass as they
    are), its result on the host, and the kernels it launched."""
    fn = registry.lookup(op, "", opset, ("cuda",)).fn
    assert fn.__module__.startswith("ortgpu.providers.cuda.kernels")
    cp = emu.cupy
    dev = [x if x is None or isinstance(x, cp.ndarray) else cp.asarray(x) for x in inputs]
    first = len(emu.launches)
    got = fn(_ctx(cp, op, opset, num_outputs), *dev, **(attrs or {}))
    return _host(got), emu.names()[first:]


def run_shared(op, opset, inputs, attrs=None, num_outputs=1):
    fn = registry.lookup(op, "", opset, (registry.SHARED,)).fn
    host = [None if x is None else _host(x) for x in inputs]
    return fn(_ctx(np, op, opset, num_outputs), *host, **(attrs or {}))


def run_both(emu, op, opset, inputs, attrs=None, num_outputs=1):
    """(raw kernel's result, shared NumPy kernel's result, kernels launched)."""
    got, names = run_cuda(emu, op, opset, inputs, attrs, num_outputs)
    return got, run_shared(op, opset, inputs, attrs, num_outputs), names


def run_onnxruntime(op, opset, inputs, attrs, out_dtypes):
    """onnxruntime's result for one node with outputs of ``out_dtypes`` (missing optional
    inputs as empty names)."""
    names = [f"in{i}" if x is not None else "" for i, x in enumerate(inputs)]
    outs = [f"out{i}" for i in range(len(out_dtypes))]
    graph = helper.make_graph(
        [helper.make_node(op, names, outs, **attrs)], "g",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)
         for n, x in zip(names, inputs) if x is not None],
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.dtype(dt)), None)
         for n, dt in zip(outs, out_dtypes)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    sess = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return tuple(sess.run(None, {n: x for n, x in zip(names, inputs) if x is not None}))


def device_view(cp, host, kind):
    """A device array equal to ``host`` laid out as ``kind``: contiguous, transposed (a
    transposed copy seen through .T), strided (every other element of a bigger buffer) or
    reversed (negative strides on the last axis)."""
    if kind == "contiguous" or host.ndim == 0:
        return cp.asarray(host)
    if kind == "transposed":
        return cp.asarray(np.ascontiguousarray(host.T)).T
    if kind == "strided":
        big = np.zeros(tuple(2 * d for d in host.shape), host.dtype)
        big[tuple(slice(None, None, 2) for _ in host.shape)] = host
        return cp.asarray(big)[tuple(slice(None, None, 2) for _ in host.shape)]
    assert kind == "reversed"
    return cp.asarray(np.ascontiguousarray(host[..., ::-1]))[..., ::-1]


# ---------------------------------------------------------------- binary ops

ARITH = ("Add", "Sub", "Mul", "Div", "Max", "Min")
COMPARE = ("Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual")
OPSET = {"Add": 14, "Sub": 14, "Mul": 14, "Div": 14, "Pow": 15, "Max": 13, "Min": 13, "Equal": 19,
         "Greater": 13, "Less": 13, "GreaterOrEqual": 16, "LessOrEqual": 16}
# (shape of A, shape of B, the kernel the launcher must pick)
BINARY_SHAPES = [((37,), (37,), "flat"), ((3000,), (), "flat"), ((), (33,), "flat"), ((), (), "flat"),
                 ((3, 1, 5), (4, 1), "bcast"), ((2, 3, 4, 5), (5,), "bcast"), ((6, 1), (1, 7), "bcast"),
                 ((2, 1, 4, 1, 3), (1, 5, 1, 6, 1), "bcast"), ((1, 1, 6), (6,), "flat"), ((0, 3), (3,), None)]


def binary_inputs(rng, op, dtype, sa, sb):
    a, b = random(rng, sa, dtype), random(rng, sb, dtype)
    if op == "Div" and dtype.kind in "iu":
        b[b == 0] = 3
    if op == "Pow":
        a = np.abs(a) + dtype.type(0.5)
    if op in COMPARE:   # few distinct values, so that many elements compare equal
        a = np.asarray(rng.integers(-3, 4, size=sa)).astype(dtype)
        b = np.asarray(rng.integers(-3, 4, size=sb)).astype(dtype)
    return a, b


@pytest.mark.parametrize("dtype", FLOATS + (I32, I64), ids=str)
@pytest.mark.parametrize("op", ARITH + COMPARE + ("Pow",))
def test_binary(op, dtype, emulated_cuda):
    if op == "Pow" and dtype.kind != "f":
        pytest.skip("integer Pow goes to the shared kernel")
    rng = np.random.default_rng(0)
    for sa, sb, path in BINARY_SHAPES:
        a, b = binary_inputs(rng, op, dtype, sa, sb)
        got, want, names = run_both(emulated_cuda, op, OPSET[op], (a, b))
        assert_close(got, want, **tolerance(dtype, "math" if op == "Pow" else "exact"))
        if path is None:
            assert names == [], "an empty output needs no launch"
        else:
            assert [n.split("<")[0] for n in names] == [f"binary_{path}"], (sa, sb, names)


@pytest.mark.parametrize("kinds", list(itertools.product(("contiguous", "transposed", "strided", "reversed"),
                                                          repeat=2)), ids=str)
@pytest.mark.parametrize("dtype", (F32, F16, I64), ids=str)
def test_binary_on_views(dtype, kinds, emulated_cuda):
    rng = np.random.default_rng(1)
    cp = emulated_cuda.cupy
    for sa, sb in (((6, 8), (6, 8)), ((2, 3, 4), (3, 4)), ((5, 1), (1, 9))):
        a, b = random(rng, sa, dtype), random(rng, sb, dtype)
        got, names = run_cuda(emulated_cuda, "Sub", 14, (device_view(cp, a, kinds[0]), device_view(cp, b, kinds[1])))
        assert_close(got, run_shared("Sub", 14, (a, b)), **tolerance(dtype, "exact"))
        assert len(names) == 1


def test_float32_subnormal_products_flush_to_zero(emulated_cuda):
    """CuPy's -ftz=true, modelled by the emulator: Mul's float32 subnormal products are 0 from
    the raw kernel where NumPy keeps them; the exact comparison allows exactly that."""
    a = np.array([1e-20, -1e-20, 2.0, 1e-38], np.float32)
    b = np.array([1e-20, 1e-20, 3.0, 0.5], np.float32)
    got, want, names = run_both(emulated_cuda, "Mul", 14, (a, b))
    assert names and np.count_nonzero((want != 0) & (np.abs(want) < np.finfo(np.float32).tiny)) == 3
    np.testing.assert_array_equal(got, [0, -0.0, 6, 0])
    assert_close(got, want, **tolerance(F32, "exact"))


def test_binary_wide_index_path(monkeypatch, emulated_cuda):
    monkeypatch.setattr(cu, "index_ctype", lambda plan: "long long")
    rng = np.random.default_rng(2)
    a, b = random(rng, (5, 1, 7), F32), random(rng, (3, 1), F32)
    got, want, names = run_both(emulated_cuda, "Mul", 14, (a, b))
    assert_close(got, want, **tolerance(F32, "exact"))
    assert names == ["binary_bcast<float, 2, long long>"]


def test_binary_beyond_eight_dims_goes_to_the_shared_kernel(emulated_cuda):
    rng = np.random.default_rng(3)
    a = random(rng, (2, 1) * 4 + (2,), F32)     # 9 dims that do not collapse
    b = random(rng, (1, 2) * 4 + (1,), F32)
    got, want, names = run_both(emulated_cuda, "Add", 14, (a, b))
    assert_close(got, want, **tolerance(F32, "exact"))
    assert names == []


@pytest.mark.parametrize("dtype", (I32, I64), ids=str)
def test_integer_arithmetic_wraps_and_division_edges(dtype, emulated_cuda):
    info = np.iinfo(dtype)
    a = np.array([7, -7, 7, -7, 5, info.min, info.min, 3, info.max, info.min], dtype=dtype)
    b = np.array([2, 2, -2, -2, 0, -1, 1, 0, 2, -3], dtype=dtype)
    got, names = run_cuda(emulated_cuda, "Div", 14, (a, b))
    # C division (toward zero); a zero divisor gives 0 as on CuPy; MIN / -1 wraps to MIN
    a64, b64 = a.astype(object), b.astype(object)
    want = [0 if y == 0 else (x // y if (x % y == 0 or (x < 0) == (y < 0)) else x // y + 1)
            for x, y in zip(a64, b64)]
    want = np.array([(w - info.min) % 2 ** (8 * dtype.itemsize) + info.min for w in want], dtype=dtype)
    np.testing.assert_array_equal(got, want)
    for op in ("Add", "Sub", "Mul"):   # wrapping, as NumPy's integer arithmetic
        got, want, _ = run_both(emulated_cuda, op, 14, (a, b))
        np.testing.assert_array_equal(got, want)
    assert len(emulated_cuda.launches) == 4


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_max_min_propagate_nan_and_fold(dtype, emulated_cuda):
    a = np.array([[1, np.nan, 3, -np.inf]], dtype=dtype)
    b = np.array([[np.nan], [2], [1]], dtype=dtype)
    c = np.array([0.5], dtype=dtype)
    for op in ("Max", "Min"):
        got, want, names = run_both(emulated_cuda, op, 13, (a, b, c))
        assert_close(got, want, **tolerance(dtype, "exact"))
        assert len(names) == 2     # two inputs folded at a time
        got, want, names = run_both(emulated_cuda, op, 13, (a,))
        assert_close(got, want, **tolerance(dtype, "exact"))
        assert names == []         # one input: nothing to compute


def test_legacy_broadcast_attribute_and_other_types(emulated_cuda):
    rng = np.random.default_rng(4)
    a, b = random(rng, (2, 3, 4), F32), random(rng, (3,), F32)
    got, want, names = run_both(emulated_cuda, "Add", 6, (a, b), {"broadcast": 1, "axis": 1})
    assert_close(got, want, **tolerance(F32, "exact"))
    assert names == ["binary_bcast<float, 0, int>"]
    u = random(rng, (4, 5), U8)            # no uint8 unit: the shared kernel on the stand-in
    got, want, names = run_both(emulated_cuda, "Add", 14, (u, u))
    assert_close(got, want, **tolerance(U8, "exact"))
    assert names == []


# ---------------------------------------------------------------- launcher mistakes the emulator catches


def test_a_scalar_of_the_wrong_width_is_caught(monkeypatch, emulated_cuda):
    monkeypatch.setattr(cu, "compute_scalar", lambda dtype, value: np.float64(value))
    x = random(np.random.default_rng(20), (10,), F32)
    with pytest.raises(TypeError, match=r"argument 3 of unary_flat<float, 1>: a value of type float64 "
                                        r"\(8 bytes\) given for a floating point of 4 bytes"):
        run_cuda(emulated_cuda, "LeakyRelu", 16, (x,), {"alpha": 0.1})


def test_a_row_block_of_partial_warps_is_caught(monkeypatch, emulated_cuda):
    monkeypatch.setattr(cu, "row_launch_config", lambda rows, cols: ((rows,), (48, 1)))
    x = random(np.random.default_rng(21), (2, 100), F32)
    with pytest.raises(EmulatedLaunchError, match="a shuffle reads lane 16 of a warp that has only 16 threads"):
        run_cuda(emulated_cuda, "Softmax", 13, (x,), {"axis": -1})


# ---------------------------------------------------------------- activations and Clip

UNARY = [("Relu", 14, {}), ("LeakyRelu", 16, {"alpha": 0.1}), ("Sigmoid", 13, {}), ("Tanh", 13, {}),
         ("Gelu", 20, {"approximate": "none"}), ("Gelu", 20, {"approximate": "tanh"}), ("Erf", 13, {}),
         ("HardSigmoid", 22, {"alpha": 0.25, "beta": 0.4}), ("HardSwish", 22, {}), ("Softplus", 22, {}),
         ("Elu", 22, {"alpha": 0.7})]
SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 30.0, -30.0, 90.0, -90.0, 1e-3, -1e-3, 3.0, -3.0]


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("op, opset, attrs", UNARY, ids=[f"{u[0]}-{u[2]}" for u in UNARY])
def test_activation(op, opset, attrs, dtype, emulated_cuda):
    rng = np.random.default_rng(5)
    cp = emulated_cuda.cupy
    x = random(rng, (3000,), dtype, -8, 8)   # more elements than the grid has threads: the loop wraps
    x[: len(SPECIALS)] = np.array(SPECIALS).astype(dtype)
    for inp in (x, x[:1], x[:0], x.reshape(60, 50)):
        got, want, names = run_both(emulated_cuda, op, opset, (inp,), attrs)
        assert_close(got, want, **tolerance(dtype))
        assert len(names) == (1 if inp.size else 0)
    # a transposed view is made contiguous first
    got, names = run_cuda(emulated_cuda, op, opset, (device_view(cp, x.reshape(60, 50), "transposed"),), attrs)
    assert_close(got, run_shared(op, opset, (x.reshape(60, 50),), attrs), **tolerance(dtype))
    grid, block = emulated_cuda.launches[0].grid, emulated_cuda.launches[0].block
    assert grid[0] * block[0] < x.size, "the grid should be smaller than the tensor here"


def test_gelu_against_onnxruntime(emulated_cuda):
    x = random(np.random.default_rng(6), (4, 300), F32, -6, 6)
    for approximate in ("none", "tanh"):
        got, _ = run_cuda(emulated_cuda, "Gelu", 20, (x,), {"approximate": approximate})
        (want,) = run_onnxruntime("Gelu", 20, (x,), {"approximate": approximate}, [F32])
        assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", (I32, I64), ids=str)
def test_relu_integers(dtype, emulated_cuda):
    x = random(np.random.default_rng(7), (3, 333), dtype)
    got, want, names = run_both(emulated_cuda, "Relu", 14, (x,))
    assert_close(got, want, **tolerance(dtype, "exact"))
    assert names == [f"unary_flat<{cu.CTYPE[dtype]}, 0>"]


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("bounds", [(-1.0, 1.0), (None, 0.5), (-0.5, None), (2.0, -2.0), (None, None)], ids=str)
def test_clip(bounds, dtype, emulated_cuda):
    rng = np.random.default_rng(8)
    x = random(rng, (5, 77), dtype)
    x[0, :3] = np.array([np.nan, np.inf, -np.inf]).astype(dtype)
    lo, hi = (None if v is None else np.array(v, dtype=dtype) for v in bounds)
    got, want, names = run_both(emulated_cuda, "Clip", 13, (x, lo, hi))
    assert_close(got, want, **tolerance(dtype, "exact"))
    attrs = {k: v for k, v in (("min", bounds[0]), ("max", bounds[1])) if v is not None}
    got, want, names6 = run_both(emulated_cuda, "Clip", 6, (x,), attrs)
    assert_close(got, want, **tolerance(dtype, "exact"))
    assert names == names6 == [f"clip_flat<{cu.CTYPE[dtype]}>"]


def test_clip_bounds_of_another_type_and_open_attributes(emulated_cuda):
    x = random(np.random.default_rng(9), (4, 9), F32)
    got, want, names = run_both(emulated_cuda, "Clip", 13, (x, np.array(-1, F64), np.array(1, F32)))
    assert_close(got, want, **tolerance(F32, "exact"))
    assert names == []    # a float64 bound for float32 input: the shared kernel
    finfo = np.finfo(np.float32)   # +-FLT_MAX attributes mean no bound
    got, want, names = run_both(emulated_cuda, "Clip", 6, (x,), {"min": float(finfo.min), "max": 0.25})
    assert_close(got, want, **tolerance(F32, "exact"))
    assert names == ["clip_flat<float>"]


# ---------------------------------------------------------------- Softmax, LogSoftmax

# (shape, opset, axis, expected block): one warp per row up to 1024 columns, else one block
SOFTMAX_CASES = [((4, 7), 13, -1, (32, 4)), ((6, 33), 13, -1, (32, 4)), ((3, 1024), 13, -1, (32, 4)),
                 ((2, 1025), 13, -1, (160, 1)), ((3, 2000), 13, -1, (256, 1)), ((1, 8200), 13, -1, (1024, 1)),
                 ((33, 3), 13, 1, (32, 4)), ((2, 3, 4), 11, 1, (32, 4)), ((2, 3, 40), 1, 1, (32, 4)),
                 ((1,), 13, 0, (32, 4)), ((0, 5), 13, -1, None), ((5, 0), 13, -1, None)]


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")   # NumPy on rows of -inf
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("shape, opset, axis, block", SOFTMAX_CASES, ids=str)
@pytest.mark.parametrize("op", ("Softmax", "LogSoftmax"))
def test_softmax(op, shape, opset, axis, block, dtype, emulated_cuda):
    rng = np.random.default_rng(10)
    x = random(rng, shape, dtype, -10, 10)
    if x.ndim == 2 and x.shape[0] > 3 and x.shape[1] > 2:
        x[1, :] = -np.inf          # a row of -inf gives NaN, as in NumPy
        x[2, 0] = np.nan           # NaN spreads over its row
        x[3, :2] = 1e4 if dtype != F16 else 6e4   # no overflow: the maximum is subtracted first
    got, want, names = run_both(emulated_cuda, op, opset, (x,), {"axis": axis})
    assert_close(got, want, **tolerance(dtype, "softmax" if op == "Softmax" else "logsoftmax"))
    if block is None:
        assert names == []
    else:
        assert names == [f"softmax_rows<{cu.CTYPE[dtype]}, {'true' if op == 'LogSoftmax' else 'false'}>"]
        assert emulated_cuda.launches[0].block == block + (1,)


def test_softmax_inner_axis_and_views(emulated_cuda):
    x = random(np.random.default_rng(11), (3, 4, 5), F32)
    got, want, names = run_both(emulated_cuda, "Softmax", 13, (x,), {"axis": 1})
    assert_close(got, want, **tolerance(F32, "softmax"))
    assert names == []    # not the last axis: the shared kernel
    cp = emulated_cuda.cupy
    for kind in ("transposed", "strided", "reversed"):
        got, names = run_cuda(emulated_cuda, "LogSoftmax", 13, (device_view(cp, x, kind),), {"axis": -1})
        assert_close(got, run_shared("LogSoftmax", 13, (x,), {"axis": -1}), **tolerance(F32, "logsoftmax"))
        assert len(names) == 1


@pytest.mark.parametrize("op", ("Softmax", "LogSoftmax"))
def test_softmax_against_onnxruntime(op, emulated_cuda):
    x = random(np.random.default_rng(12), (7, 1500), F32, -20, 20)
    got, _ = run_cuda(emulated_cuda, op, 13, (x,), {"axis": -1})
    (want,) = run_onnxruntime(op, 13, (x,), {"axis": -1}, [F32])
    assert_close(got, want, **tolerance(F32, "softmax" if op == "Softmax" else "logsoftmax"))


# ---------------------------------------------------------------- LayerNormalization

# (shape, axis, shape of Scale/B or None for X.shape[axis:], with bias)
LAYERNORM_CASES = [((4, 768), -1, None, True), ((3, 7), -1, None, False), ((5, 33), -1, None, True),
                   ((2, 3, 1500), -1, None, True), ((2, 3, 160), 1, None, True), ((3, 2000), 1, None, False),
                   ((6, 1, 33), 1, (33,), True), ((2, 9000), -1, None, True)]


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("shape, axis, pshape, with_bias", LAYERNORM_CASES, ids=str)
def test_layernorm(shape, axis, pshape, with_bias, dtype, emulated_cuda):
    rng = np.random.default_rng(13)
    x = random(rng, shape, dtype) + dtype.type(3)      # a mean away from 0
    tail = pshape or shape[axis % len(shape):]
    scale = random(rng, tail, dtype)
    bias = random(rng, tail, dtype) if with_bias else None
    for num_outputs in (1, 2, 3):
        got, want, names = run_both(emulated_cuda, "LayerNormalization", 17, (x, scale, bias),
                                    {"axis": axis, "epsilon": 1e-5}, num_outputs=num_outputs)
        got = got if isinstance(got, tuple) else (got,)
        want = want if isinstance(want, tuple) else (want,)
        assert len(got) == len(want) == num_outputs
        for g, w in zip(got, want):   # Mean and InvStdDev are float32 (stash_type 1) for every X
            assert_close(g, w, **tolerance(w.dtype if w.dtype != F32 else dtype, "layernorm"))
        assert names == [f"layernorm_rows<{cu.CTYPE[dtype]}>"]


def test_layernorm_against_onnxruntime(emulated_cuda):
    rng = np.random.default_rng(14)
    x, s, b = random(rng, (3, 5, 64), F32) + 2, random(rng, (5, 64), F32), random(rng, (5, 64), F32)
    got, names = run_cuda(emulated_cuda, "LayerNormalization", 17, (x, s, b), {"axis": 1, "epsilon": 1e-3}, 3)
    want = run_onnxruntime("LayerNormalization", 17, (x, s, b), {"axis": 1, "epsilon": 1e-3}, [F32] * 3)
    for g, w in zip(got, want):
        assert_close(g, w, **tolerance(F32, "layernorm"))
    assert len(names) == 1


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # NumPy's mean of an empty slice
def test_layernorm_inputs_the_kernel_cannot_take(emulated_cuda):
    rng = np.random.default_rng(15)
    x = random(rng, (4, 6), F32)
    for x, scale, bias in ((x, random(rng, (1, 6), F32), None),          # Scale broadcasts over rows
                           (x, random(rng, (6,), F64), None),            # another type
                           (x, random(rng, (6,), F32), random(rng, (1,), F32)),   # B broadcast
                           (x[:0], random(rng, (6,), F32), None),        # no rows
                           (x[:, :0], random(rng, (0,), F32), None)):    # empty rows
        got, want, names = run_both(emulated_cuda, "LayerNormalization", 17, (x, scale, bias), {"axis": -1},
                                    num_outputs=3)
        for g, w in zip(got, want):
            assert_close(g, w, **tolerance(F32, "layernorm"))
        assert names == []


# ---------------------------------------------------------------- Where and Cast

WHERE_SHAPES = [((100,), (100,), (100,), "flat"), ((3000,), (), (), "flat"), ((3, 1), (1, 4), (), "bcast"),
                ((2, 3, 4), (4,), (3, 1), "bcast"), ((2, 1, 3, 1, 2), (1, 4, 1, 5, 1), (2,), "bcast"),
                ((0,), (1,), (1,), None)]


@pytest.mark.parametrize("dtype", (F32, F16, F64, I64, I32, I16, I8, U8, np.dtype(np.bool_)), ids=str)
def test_where(dtype, emulated_cuda):
    rng = np.random.default_rng(16)
    for sc, sx, sy, path in WHERE_SHAPES:
        cond = random(rng, sc, np.bool_)
        x, y = random(rng, sx, dtype), random(rng, sy, dtype)
        got, want, names = run_both(emulated_cuda, "Where", 16, (cond, x, y))
        assert_close(got, want, **tolerance(dtype, "exact"))
        assert [n.split("<")[0] for n in names] == ([f"where_{path}"] if path else [])


def test_where_on_views(emulated_cuda):
    rng = np.random.default_rng(17)
    cp = emulated_cuda.cupy
    cond, x, y = random(rng, (5, 6), np.bool_), random(rng, (5, 6), F32), random(rng, (6,), F32)
    for kinds in itertools.product(("transposed", "strided", "reversed"), repeat=2):
        got, names = run_cuda(emulated_cuda, "Where", 16, (device_view(cp, cond, kinds[0]),
                                                          device_view(cp, x, kinds[1]), y))
        assert_close(got, run_shared("Where", 16, (cond, x, y)), **tolerance(F32, "exact"))
        assert len(names) == 1


CAST_TYPES = list(cu.CTYPE)


def _onnx_type(dtype):
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


@pytest.mark.parametrize("src", CAST_TYPES, ids=str)
def test_cast(src, emulated_cuda):
    rng = np.random.default_rng(18)
    for dst in CAST_TYPES:
        if dst == src:
            continue
        # values every target represents (no negative numbers for unsigned targets, none > 127)
        base = rng.uniform(0, 100, size=(7, 19))
        base[0, :4] = (0.0, 1.0, 99.75, 0.5)
        x = base.astype(src) if src.kind == "f" else np.floor(base).astype(src)
        if src.kind == "b":
            x = base > 50
        got, want, names = run_both(emulated_cuda, "Cast", 21, (x,), {"to": _onnx_type(dst)})
        assert_close(got, want, **tolerance(dst, "exact"))
        assert names == [f"cast_flat<{cu.CTYPE[src]}, {cu.CTYPE[dst]}>"]
        got, want, _ = run_both(emulated_cuda, "CastLike", 21, (x[:, :3], np.zeros(1, dst)))
        assert_close(got, want, **tolerance(dst, "exact"))


@pytest.mark.parametrize("src", (F32, F64), ids=str)
def test_cast_float_edges(src, emulated_cuda):
    """Truncation toward zero, NaN to bool, and float16 rounding (ties, subnormals,
    overflow, double rounding avoided from float64) against NumPy's astype."""
    x = np.array([-2.7, -0.5, 2.7, 126.9, -128.0, np.nan, np.inf, -np.inf, 0.0, -0.0,
                  65519.0, 65520.0, 1e-8, -3e-8, 2.0 ** -25, 1.5 * 2.0 ** -25, 6e-5,
                  1 + 2.0 ** -11, 1 + 2.0 ** -11 + 2.0 ** -30, 2049.0, 1e5], dtype=src)
    finite = np.isfinite(x) & (np.abs(x) < 127)
    cp = emulated_cuda.cupy
    for dst, values in ((F16, x), (np.dtype(np.bool_), x), (I8, x[finite]), (I32, x[finite]), (I64, x[finite])):
        with np.errstate(over="ignore"):
            want = values.astype(dst)
        got, names = run_cuda(emulated_cuda, "Cast", 21, (values,), {"to": _onnx_type(dst)})
        np.testing.assert_array_equal(got, want)
        got, names2 = run_cuda(emulated_cuda, "Cast", 21, (device_view(cp, values, "reversed"),),
                               {"to": _onnx_type(dst)})
        np.testing.assert_array_equal(got, want)
        assert len(names) == len(names2) == 1
    got, names = run_cuda(emulated_cuda, "Cast", 21, (x[:0].reshape(0, 3),), {"to": _onnx_type(F16)})
    assert got.shape == (0, 3) and got.dtype == F16 and names == []


# ----------------------------------------------------------------------------- RoiAlign

def _rois(rng, n, h, w):
    x1, y1 = rng.uniform(-2, w - 1, n), rng.uniform(-2, h - 1, n)
    return np.stack([x1, y1, x1 + rng.uniform(0, w, n), y1 + rng.uniform(0, h, n)], axis=1)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("mode,ctm,sampling,opset", [
    ("avg", "half_pixel", 0, 16), ("avg", "output_half_pixel", 2, 16),
    ("max", "half_pixel", 0, 22), ("avg", "half_pixel", 0, 10)])
def test_roi_align(dtype, mode, ctm, sampling, opset, emulated_cuda):
    rng = np.random.default_rng(7)
    x = random(rng, (2, 3, 9, 11), dtype)
    rois = _rois(rng, 5, 9, 11).astype(dtype)
    rois[0] = [3.0, 2.0, 3.0, 2.0]           # a zero-size box
    batch = np.array([0, 1, 1, 0, 1], np.int64)
    attrs = dict(mode=mode, coordinate_transformation_mode=ctm, sampling_ratio=sampling,
                 output_height=3, output_width=4, spatial_scale=0.5 if sampling else 1.0)
    got, want, names = run_both(emulated_cuda, "RoiAlign", opset, [x, rois, batch], attrs)
    assert names == [f"roi_align<{cu.CTYPE[dtype]}>"]
    assert got.shape == (5, 3, 3, 4) and got.dtype == dtype
    tol = tolerance(dtype)
    if dtype == F64:
        tol = {"rtol": 1e-10, "atol": 1e-12}     # sums in another order than the shared kernel
    assert_close(got, want, **tol)


def test_roi_align_refuses_a_batch_index_out_of_range(emulated_cuda):
    x = np.zeros((1, 1, 4, 4), np.float32)
    rois = np.array([[0, 0, 2, 2]], np.float32)
    with pytest.raises(IndexError, match="batch index"):
        run_cuda(emulated_cuda, "RoiAlign", 16, [x, rois, np.array([1], np.int64)])
