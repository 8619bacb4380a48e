"""The arithmetic CUDA kernels (element-wise, activations, Softmax, LayerNorm, Where, Cast) of
``providers/cuda/kernels`` on a real device, against the shared NumPy kernels.

Every test needs CuPy and a CUDA device (``pytest -m gpu``) and skips cleanly without them.
Each case runs the launcher on CuPy arrays, checks that the raw kernel really ran (no silent
fallback), and compares with the shared kernel run on NumPy, with the tolerances of
``cuda_checks.py`` (shared with the emulated tier, ``test_cuda_math_kernels_emulated.py``).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from support.cuda_checks import F16, F32, F64, FLOATS, I32, I64, assert_close, random, require_cuda_device, tolerance
from ortgpu.providers import registry
from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.registry import KernelContext

pytestmark = pytest.mark.gpu

cupy = require_cuda_device()

@pytest.fixture
def launches(monkeypatch):
    """Counts compiled-kernel lookups, to prove the raw path ran."""
    calls = []
    real = cu.function

    def counting(unit, name):
        calls.append(name)
        return real(unit, name)

    monkeypatch.setattr(cu, "function", counting)
    return calls


def _ctx(xp, op, opset, num_outputs):
    return KernelContext(xp, "cuda", op_type=op, opset=opset, num_outputs=num_outputs,
                         output_present=(True,) * num_outputs)


def _host(v):
    if isinstance(v, tuple):
        return tuple(_host(x) for x in v)
    return cupy.asnumpy(v) if isinstance(v, cupy.ndarray) else np.asarray(v)


def run_both(op, opset, inputs, attrs=None, num_outputs=1):
    """(raw CUDA result on the host, shared NumPy result)."""
    attrs = attrs or {}
    cuda_fn = registry.lookup(op, "", opset, ("cuda",)).fn
    shared_fn = registry.lookup(op, "", opset, (registry.SHARED,)).fn
    assert cuda_fn.__module__.startswith("ortgpu.providers.cuda.kernels")
    dev = [None if x is None else cupy.asarray(x) for x in inputs]
    got = cuda_fn(_ctx(cupy, op, opset, num_outputs), *dev, **attrs)
    cupy.cuda.get_current_stream().synchronize()
    want = shared_fn(_ctx(np, op, opset, num_outputs), *inputs, **attrs)
    return _host(got), want


# ---------------------------------------------------------------- binary ops

BINARY_SHAPES = [((1000,), (1000,)), ((257,), ()), ((), (33,)), ((3, 1, 5), (4, 1)),
                 ((2, 3, 4, 5), (5,)), ((2, 1, 4, 1, 3), (1, 5, 1, 6, 1)), ((0, 3), (3,))]
ARITH = ("Add", "Sub", "Mul", "Div", "Max", "Min")
COMPARE = ("Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual")
OPSET = {"Add": 14, "Sub": 14, "Mul": 14, "Div": 14, "Pow": 15, "Max": 13, "Min": 13, "Equal": 19,
         "Greater": 13, "Less": 13, "GreaterOrEqual": 16, "LessOrEqual": 16}


@pytest.mark.parametrize("shapes", BINARY_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", FLOATS + (I32, I64), ids=str)
@pytest.mark.parametrize("op", ARITH + COMPARE + ("Pow",))
def test_binary(op, dtype, shapes, launches):
    if op == "Pow" and dtype.kind != "f":
        pytest.skip("integer Pow goes to the shared kernel")
    rng = np.random.default_rng(0)
    a, b = random(rng, shapes[0], dtype), random(rng, shapes[1], dtype)
    if op == "Div" and dtype.kind in "iu":
        b[b == 0] = 3
    if op == "Pow":
        a = np.abs(a) + dtype.type(0.5)
    if op in COMPARE:   # few distinct values, so that many elements compare equal
        a = rng.integers(-3, 4, size=shapes[0]).astype(dtype)
        b = rng.integers(-3, 4, size=shapes[1]).astype(dtype)
    got, want = run_both(op, OPSET[op], (a, b))
    exact = op != "Pow"
    assert_close(got, want, **tolerance(dtype, "exact" if exact else "math"))
    if got.size:
        assert launches, "the raw kernel did not run"


@pytest.mark.parametrize("dtype", FLOATS + (I32,), ids=str)
def test_binary_on_strided_views(dtype, launches):
    rng = np.random.default_rng(1)
    a = random(rng, (6, 8), dtype)
    b = random(rng, (8, 6), dtype)
    cuda_fn = registry.lookup("Add", "", 14, ("cuda",)).fn
    da, db = cupy.asarray(a)[:, ::2], cupy.asarray(b).T[:, 1::2]   # strided, transposed
    got = _host(cuda_fn(_ctx(cupy, "Add", 14, 1), da, db))
    np.testing.assert_array_equal(got, a[:, ::2] + b.T[:, 1::2])
    assert launches


def test_binary_wide_index_path(monkeypatch, launches):
    monkeypatch.setattr(cu, "index_ctype", lambda plan: "long long")
    rng = np.random.default_rng(2)
    a, b = random(rng, (5, 1, 7), F32), random(rng, (3, 1), F32)
    got, want = run_both("Mul", 14, (a, b))
    assert_close(got, want, **tolerance(F32, "exact"))
    assert any("long long>" in name for name in launches)


@pytest.mark.parametrize("dtype", (I32, I64), ids=str)
def test_integer_division_edges(dtype):
    info = np.iinfo(dtype)
    a = np.array([7, -7, 7, -7, 5, info.min, info.min, 3], dtype=dtype)
    b = np.array([2, 2, -2, -2, 0, -1, 1, 0], dtype=dtype)
    cuda_fn = registry.lookup("Div", "", 14, ("cuda",)).fn
    got = _host(cuda_fn(_ctx(cupy, "Div", 14, 1), cupy.asarray(a), cupy.asarray(b)))
    # truncation toward zero; a zero divisor gives 0 (as the shared kernel on CuPy); MIN / -1 wraps
    np.testing.assert_array_equal(got, np.array([3, -3, -3, 3, 0, info.min, info.min, 0], dtype=dtype))


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_max_min_propagate_nan_and_fold(dtype):
    a = np.array([1, np.nan, 3, -np.inf], dtype=dtype)
    b = np.array([np.nan, 2, 1, 0], dtype=dtype)
    c = np.array([0.5], dtype=dtype)
    for op in ("Max", "Min"):
        got, want = run_both(op, 13, (a, b, c))
        assert_close(got, want, **tolerance(dtype, "exact"))


def test_legacy_broadcast_attribute():
    rng = np.random.default_rng(3)
    a, b = random(rng, (2, 3, 4), F32), random(rng, (3,), F32)
    got, want = run_both("Add", 6, (a, b), {"broadcast": 1, "axis": 1})
    assert_close(got, want, **tolerance(F32, "exact"))


# ---------------------------------------------------------------- activations and Clip

UNARY = [("Relu", 14, {}), ("LeakyRelu", 16, {"alpha": 0.1}), ("Sigmoid", 13, {}), ("Tanh", 13, {}),
         ("Gelu", 20, {"approximate": "none"}), ("Gelu", 20, {"approximate": "tanh"}), ("Erf", 13, {}),
         ("HardSigmoid", 22, {"alpha": 0.25, "beta": 0.4}), ("HardSwish", 22, {}), ("Softplus", 22, {}),
         ("Elu", 22, {"alpha": 0.7})]
SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 30.0, -30.0, 90.0, -90.0]


@pytest.mark.parametrize("size", (1, 1023, 4097))
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("op, opset, attrs", UNARY, ids=[f"{u[0]}-{u[2]}" for u in UNARY])
def test_activation(op, opset, attrs, dtype, size, launches):
    rng = np.random.default_rng(4)
    x = random(rng, (size,), dtype, -8, 8)
    x[: min(size, len(SPECIALS))] = np.array(SPECIALS[:size], dtype=np.float64).astype(dtype)
    got, want = run_both(op, opset, (x.reshape(-1, 1) if size > 1 else x,), attrs)
    assert_close(got, want, **tolerance(dtype))
    assert launches


@pytest.mark.parametrize("dtype", (I32, I64), ids=str)
def test_relu_integers(dtype, launches):
    x = random(np.random.default_rng(5), (3, 333), dtype)
    got, want = run_both("Relu", 14, (x,))
    assert_close(got, want, **tolerance(dtype, "exact"))
    assert launches


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("bounds", [(-1.0, 1.0), (None, 0.5), (-0.5, None), (2.0, -2.0), (None, None)],
                         ids=str)
def test_clip(bounds, dtype, launches):
    rng = np.random.default_rng(6)
    x = random(rng, (5, 77), dtype)
    x[0, :3] = np.array([np.nan, np.inf, -np.inf]).astype(dtype)
    lo, hi = (None if v is None else np.array(v, dtype=dtype) for v in bounds)
    got, want = run_both("Clip", 13, (x, lo, hi))
    assert_close(got, want, **tolerance(dtype, "exact"))
    attrs = {k: v for k, v in (("min", bounds[0]), ("max", bounds[1])) if v is not None}
    got, want = run_both("Clip", 6, (x,), attrs)
    assert_close(got, want, **tolerance(dtype, "exact"))
    assert launches


# ---------------------------------------------------------------- Softmax, LogSoftmax

SOFTMAX_CASES = [((4, 7), 13, -1), ((3, 1024), 13, -1), ((2, 1025), 13, -1), ((5, 50257), 13, -1),
                 ((33, 3), 13, 1), ((2, 3, 4), 11, 1), ((2, 3, 40), 1, 1), ((0, 5), 13, -1), ((1,), 13, 0)]


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("shape, opset, axis", SOFTMAX_CASES, ids=str)
@pytest.mark.parametrize("op", ("Softmax", "LogSoftmax"))
def test_softmax(op, shape, opset, axis, dtype, launches):
    rng = np.random.default_rng(7)
    x = random(rng, shape, dtype, -10, 10)
    if x.ndim == 2 and x.shape[0] > 2 and x.shape[1] > 2:
        x[1, :] = -np.inf          # a row of -inf gives NaN, as in NumPy
        x[2, 0] = np.nan           # NaN spreads over its row
    got, want = run_both(op, opset, (x,), {"axis": axis})
    assert_close(got, want, **tolerance(dtype, "softmax" if op == "Softmax" else "logsoftmax"))
    if x.size:
        assert launches


def test_softmax_inner_axis_goes_to_shared(launches):
    x = random(np.random.default_rng(8), (3, 4, 5), F32)
    got, want = run_both("Softmax", 13, (x,), {"axis": 1})
    assert_close(got, want, **tolerance(F32, "softmax"))
    assert not launches


# ---------------------------------------------------------------- LayerNormalization

LAYERNORM_CASES = [((4, 768), -1, True), ((3, 7), -1, False), ((2, 3, 4096), -1, True),
                   ((2, 3, 4096), 1, True), ((5, 2000), 1, True), ((6, 1, 33), -1, True)]


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("shape, axis, with_bias", LAYERNORM_CASES, ids=str)
@pytest.mark.parametrize("num_outputs", (1, 3))
def test_layernorm(shape, axis, with_bias, dtype, num_outputs, launches):
    rng = np.random.default_rng(9)
    x = random(rng, shape, dtype) + dtype.type(3)      # a mean away from 0
    tail = shape[axis % len(shape):]
    scale = random(rng, tail, dtype)
    bias = random(rng, tail, dtype) if with_bias else None
    got, want = run_both("LayerNormalization", 17, (x, scale, bias), {"axis": axis, "epsilon": 1e-5},
                         num_outputs=num_outputs)
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want) == num_outputs
    for g, w in zip(got, want):   # Mean and InvStdDev are float32 (stash_type 1) for every X
        assert_close(g, w, **tolerance(w.dtype, "layernorm"))
    assert launches


# ---------------------------------------------------------------- Where and Cast

WHERE_SHAPES = [((100,), (100,), (100,)), ((3, 1), (1, 4), ()), ((2, 3, 4), (4,), (3, 1)), ((0,), (1,), (1,))]


@pytest.mark.parametrize("dtype", (F32, F16, F64, I64, np.dtype(np.uint8), np.dtype(np.bool_)), ids=str)
@pytest.mark.parametrize("shapes", WHERE_SHAPES, ids=str)
def test_where(shapes, dtype, launches):
    rng = np.random.default_rng(10)
    cond = rng.random(shapes[0]) < 0.5
    x, y = random(rng, shapes[1], dtype), random(rng, shapes[2], dtype)
    got, want = run_both("Where", 16, (cond, x, y))
    assert_close(got, want, **tolerance(dtype, "exact"))
    if got.size:
        assert launches


CAST_TYPES = list(cu.CTYPE)


@pytest.mark.parametrize("src, dst", list(itertools.permutations(CAST_TYPES, 2)), ids=str)
def test_cast(src, dst, launches):
    rng = np.random.default_rng(11)
    # values every target represents (no negative numbers for unsigned targets, none > 127)
    base = rng.uniform(0, 100, size=(7, 19))
    base[0, :4] = (0.0, 1.0, 99.75, 0.5)
    x = base.astype(src) if src.kind == "f" else np.floor(base).astype(src)
    if src.kind == "b":
        x = base > 50
    got, want = run_both("Cast", 21, (x,), {"to": _onnx_type(dst)})
    assert_close(got, want, **tolerance(dst, "exact"))
    assert launches


def _onnx_type(dtype):
    from onnx import helper
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
