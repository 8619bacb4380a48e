"""Raw CUDA launchers for broadcast binary ops: Add, Sub, Mul, Div, Pow, Max, Min and the
comparisons Equal, Greater, Less, GreaterOrEqual, LessOrEqual (source: elementwise_binary.cu).

They handle two operands of one element type among float32, float16, float64, int32 and
int64 (Pow: the float types) with up to 8 dims after collapsing; anything else goes to the
shared kernels of ``providers/kernels/elementwise.py`` and ``logic.py``, whose semantics
they copy.  Integer Div by zero gives 0 here, as the shared kernel does on CuPy.

Never run on a GPU yet: written and compile-checked without a device.
"""
from __future__ import annotations

import numpy as np

from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.kernels import elementwise as shared
from ortgpu.providers.kernels import logic as shared_logic
from ortgpu.providers.kernels.elementwise import legacy_broadcast
from ortgpu.providers.dtype_sets import BOOL, COMPLEX, CUPY_BF16, FLOATS, INDEX, INTEGER
from ortgpu.providers.registry import kernel

SOURCE = "elementwise_binary.cu"
# BinaryOp codes of elementwise_binary.cu
OPS = {"Add": 0, "Sub": 1, "Mul": 2, "Div": 3, "Pow": 4, "Max": 5, "Min": 6,
       "Equal": 10, "Greater": 11, "Less": 12, "GreaterOrEqual": 13, "LessOrEqual": 14}
COMPARISONS = frozenset(("Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual"))
TYPES = cu.FLOAT_TYPES + (np.dtype(np.int32), np.dtype(np.int64))
INDEX_TYPES = ("int", "long long")


def ops_for(dtype) -> list[str]:
    """The ops instantiated for an element type (Pow only for floats)."""
    return [op for op in OPS if op != "Pow" or np.dtype(dtype).kind == "f"]


def flat_name(ctype: str, op: str) -> str:
    return f"binary_flat<{ctype}, {OPS[op]}>"


def bcast_name(ctype: str, op: str, index: str) -> str:
    return f"binary_bcast<{ctype}, {OPS[op]}, {index}>"


def _names(dtype):
    ctype = cu.CTYPE[dtype]
    for op in ops_for(dtype):
        yield flat_name(ctype, op)
        for index in INDEX_TYPES:
            yield bcast_name(ctype, op, index)


UNITS = {dt: cu.declare(SOURCE, cu.CTYPE[dt], _names(dt)) for dt in TYPES}


def run_binary(op: str, A, B):
    """``op(A, B)`` with NumPy broadcasting on the GPU, or None when not handled here."""
    dt = A.dtype
    if B.dtype != dt or dt not in UNITS or op not in ops_for(dt):
        return None
    import cupy

    out_shape = np.broadcast_shapes(A.shape, B.shape)
    plan = cu.plan_broadcast(out_shape, [
        (A.shape, cu.element_strides(A.shape, A.strides, A.itemsize)),
        (B.shape, cu.element_strides(B.shape, B.strides, B.itemsize))])
    if plan is None:
        return None
    out = cupy.empty(out_shape, dtype=np.bool_ if op in COMPARISONS else dt)
    if plan.size == 0:
        return out
    unit, ctype = UNITS[dt], cu.CTYPE[dt]
    if plan.steps is not None:
        fn = cu.function(unit, flat_name(ctype, op))
        args = (A, B, out, np.int64(plan.size), np.int32(plan.steps[0]), np.int32(plan.steps[1]))
    else:
        fn = cu.function(unit, bcast_name(ctype, op, cu.index_ctype(plan)))
        args = (A, B, out, np.int64(plan.size), plan.struct())
    cu.launch_elementwise(fn, plan.size, args)
    return out


def _binary(ctx, op, A, B, broadcast, axis, fallback):
    if broadcast:
        B = legacy_broadcast(B, A.ndim, broadcast, axis)
    if cu.on_device(ctx, A, B):
        y = run_binary(op, A, B)
        if y is not None:
            return y
    return fallback(ctx, A, B)


_ARITH = (1, 6, 7, 13, 14)


@kernel("Add", since=_ARITH, provider="cuda", types={"T": INTEGER | FLOATS})
def Add(ctx, A, B, *, broadcast=0, axis=None, **_legacy):
    """A + B (raw CUDA; integers wrap)."""
    return _binary(ctx, "Add", A, B, broadcast, axis, shared.Add)


@kernel("Sub", since=_ARITH, provider="cuda", types={"T": INTEGER | FLOATS})
def Sub(ctx, A, B, *, broadcast=0, axis=None, **_legacy):
    """A - B (raw CUDA; integers wrap)."""
    return _binary(ctx, "Sub", A, B, broadcast, axis, shared.Sub)


@kernel("Mul", since=_ARITH, provider="cuda", types={"T": INTEGER | FLOATS})
def Mul(ctx, A, B, *, broadcast=0, axis=None, **_legacy):
    """A * B (raw CUDA; integers wrap)."""
    return _binary(ctx, "Mul", A, B, broadcast, axis, shared.Mul)


@kernel("Div", since=_ARITH, provider="cuda", types={"T": INTEGER | FLOATS})
def Div(ctx, A, B, *, broadcast=0, axis=None, **_legacy):
    """A / B (raw CUDA); integer division truncates toward zero, a zero divisor gives 0."""
    return _binary(ctx, "Div", A, B, broadcast, axis, shared.Div)


@kernel("Pow", since=(1, 7, 12, 13, 15), provider="cuda",
        types={"T": FLOATS | INDEX, "T1": INTEGER | FLOATS})
def Pow(ctx, X, Y, *, broadcast=0, axis=None):
    """X ** Y (raw CUDA when X and Y share a float type)."""
    return _binary(ctx, "Pow", X, Y, broadcast, axis, shared.Pow)


def _fold(ctx, op, inputs, fallback):
    """Max/Min of 2+ inputs as a chain of binary launches; any input not handled here sends
    the whole node to the shared kernel."""
    if len(inputs) >= 2 and cu.on_device(ctx, *inputs):
        acc = inputs[0]
        for x in inputs[1:]:
            acc = run_binary(op, acc, x)
            if acc is None:
                break
        else:
            return acc
    return fallback(ctx, *inputs)


@kernel("Max", since=(1, 6, 8, 12, 13), provider="cuda", types={"T": INTEGER | FLOATS})
def Max(ctx, *data_0, **_legacy):
    """Element-wise maximum of the inputs (raw CUDA; NaN propagates)."""
    return _fold(ctx, "Max", data_0, shared.Max)


@kernel("Min", since=(1, 6, 8, 12, 13), provider="cuda", types={"T": INTEGER | FLOATS})
def Min(ctx, *data_0, **_legacy):
    """Element-wise minimum of the inputs (raw CUDA; NaN propagates)."""
    return _fold(ctx, "Min", data_0, shared.Min)


@kernel("Equal", since=(1, 7, 11, 13, 19), provider="cuda", types={"T": CUPY_BF16 - COMPLEX, "T1": BOOL})
def Equal(ctx, A, B, *, broadcast=0, axis=None):
    """A == B (raw CUDA for numbers; bool elsewhere)."""
    return _binary(ctx, "Equal", A, B, broadcast, axis, shared_logic.Equal)


@kernel("Greater", since=(1, 7, 9, 13), provider="cuda", types={"T": INTEGER | FLOATS, "T1": BOOL})
def Greater(ctx, A, B, *, broadcast=0, axis=None):
    """A > B (raw CUDA)."""
    return _binary(ctx, "Greater", A, B, broadcast, axis, shared_logic.Greater)


@kernel("Less", since=(1, 7, 9, 13), provider="cuda", types={"T": INTEGER | FLOATS, "T1": BOOL})
def Less(ctx, A, B, *, broadcast=0, axis=None):
    """A < B (raw CUDA)."""
    return _binary(ctx, "Less", A, B, broadcast, axis, shared_logic.Less)


@kernel("GreaterOrEqual", since=(12, 16), provider="cuda", types={"T": INTEGER | FLOATS, "T1": BOOL})
def GreaterOrEqual(ctx, A, B):
    """A >= B (raw CUDA)."""
    return _binary(ctx, "GreaterOrEqual", A, B, 0, None, shared_logic.GreaterOrEqual)


@kernel("LessOrEqual", since=(12, 16), provider="cuda", types={"T": INTEGER | FLOATS, "T1": BOOL})
def LessOrEqual(ctx, A, B):
    """A <= B (raw CUDA)."""
    return _binary(ctx, "LessOrEqual", A, B, 0, None, shared_logic.LessOrEqual)
