"""Boolean logic, comparisons and the NaN/Inf tests: every output here is bool."""
from __future__ import annotations

import numpy as np

from ortgpu.providers.kernels.elementwise import as_array, legacy_broadcast, work_dtype
from ortgpu.providers.dtype_sets import BOOL, COMPLEX, FLOAT8, FLOATS, NUMERIC, STANDARD
from ortgpu.providers.registry import kernel

_BOOL = np.dtype(bool)


def _compare(ctx, A, B, op, broadcast=0, axis=None):
    """``op(A, B)`` as bool; the ml_dtypes floats compare as float32 (exactly)."""
    B = legacy_broadcast(B, A.ndim, broadcast, axis)
    if A.dtype.kind == "V":
        A, B = A.astype(np.float32), B.astype(np.float32)
    return as_array(ctx.xp, op(A, B), _BOOL)


@kernel("Not", since=1, types={"T": BOOL})
def Not(ctx, X):
    """Logical not."""
    return as_array(ctx.xp, ctx.xp.logical_not(X), _BOOL)


@kernel("And", since=(1, 7), types={"T": BOOL, "T1": BOOL})
def And(ctx, A, B, *, broadcast=0, axis=None):
    """Logical and."""
    return _compare(ctx, A, B, ctx.xp.logical_and, broadcast, axis)


@kernel("Or", since=(1, 7), types={"T": BOOL, "T1": BOOL})
def Or(ctx, A, B, *, broadcast=0, axis=None):
    """Logical or."""
    return _compare(ctx, A, B, ctx.xp.logical_or, broadcast, axis)


@kernel("Xor", since=(1, 7), types={"T": BOOL, "T1": BOOL})
def Xor(ctx, A, B, *, broadcast=0, axis=None):
    """Logical exclusive or."""
    return _compare(ctx, A, B, ctx.xp.logical_xor, broadcast, axis)


@kernel("Equal", since=(1, 7, 11, 13, 19), types={"T": STANDARD - COMPLEX, "T1": BOOL})
def Equal(ctx, A, B, *, broadcast=0, axis=None):
    """A == B (numbers, bool or strings)."""
    return _compare(ctx, A, B, ctx.xp.equal, broadcast, axis)


@kernel("Greater", since=(1, 7, 9, 13), types={"T": NUMERIC, "T1": BOOL})
def Greater(ctx, A, B, *, broadcast=0, axis=None):
    """A > B."""
    return _compare(ctx, A, B, ctx.xp.greater, broadcast, axis)


@kernel("Less", since=(1, 7, 9, 13), types={"T": NUMERIC, "T1": BOOL})
def Less(ctx, A, B, *, broadcast=0, axis=None):
    """A < B."""
    return _compare(ctx, A, B, ctx.xp.less, broadcast, axis)


@kernel("GreaterOrEqual", since=(12, 16), types={"T": NUMERIC, "T1": BOOL})
def GreaterOrEqual(ctx, A, B):
    """A >= B."""
    return _compare(ctx, A, B, ctx.xp.greater_equal)


@kernel("LessOrEqual", since=(12, 16), types={"T": NUMERIC, "T1": BOOL})
def LessOrEqual(ctx, A, B):
    """A <= B."""
    return _compare(ctx, A, B, ctx.xp.less_equal)


def _as_float(X):
    return X if X.dtype.kind == "f" else X.astype(work_dtype(X.dtype))


@kernel("IsNaN", since=(9, 13, 20), types={"T1": FLOATS | FLOAT8, "T2": BOOL})
def IsNaN(ctx, X):
    """True where X is NaN."""
    return as_array(ctx.xp, ctx.xp.isnan(_as_float(X)), _BOOL)


@kernel("IsInf", since=(10, 20), types={"T1": FLOATS | FLOAT8, "T2": BOOL})
def IsInf(ctx, X, *, detect_negative=1, detect_positive=1):
    """True where X is +inf (if detect_positive) or -inf (if detect_negative)."""
    xp = ctx.xp
    x = _as_float(X)
    inf = xp.isinf(x)
    if not detect_negative:
        inf &= x > 0
    if not detect_positive:
        inf &= x < 0
    return as_array(xp, inf, _BOOL)
