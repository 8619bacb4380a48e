"""Element-wise math: unary functions, binary arithmetic, Pow, Mod, bit operations,
the variadic Max/Min/Sum/Mean, Clip and Where.

Also the helpers the other element-wise files share (activations.py, logic.py):
``compute_in`` runs a function in a precision NumPy handles well and casts back.
"""
from __future__ import annotations

import functools

import numpy as np

from ortgpu.errors import Fail
from ortgpu.providers.cpu import half_compiled
from ortgpu.providers.dtype_sets import (
    BOOL, FLOAT, FLOATS, INDEX, INTEGER, NUMERIC, SIGNED, STANDARD)
from ortgpu.providers.registry import kernel


# ---------------------------------------------------------------- shared helpers

def work_dtype(dtype, widen_half=False):
    """The dtype to compute in for a float input: float32 for the ml_dtypes floats (and,
    with ``widen_half``, for float16, so a multi-step formula rounds once at the end)."""
    dt = np.dtype(dtype)
    if dt.kind == "f" and not (widen_half and dt.itemsize == 2):
        return dt
    return np.dtype(np.float32)


def compute_in(ctx, fn, *arrays, widen_half=False):
    """``fn(*arrays)`` computed in ``work_dtype`` of the first array's dtype and returned
    as an array of that dtype (floating-point warnings silenced: inf and NaN are values)."""
    dt = arrays[0].dtype
    if dt in _AS_IS and (len(arrays) == 1 or all(a.dtype == dt for a in arrays)):
        args = arrays  # float32/float64 alone: computed as they are, nothing to cast
    else:
        wdt = work_dtype(dt, widen_half)
        args = [a.astype(wdt, copy=False) for a in arrays]
    with np.errstate(all="ignore"):
        y = fn(*args)
    return y if type(y) is np.ndarray and y.dtype == dt else as_array(ctx.xp, y, dt)


_AS_IS = frozenset({np.dtype(np.float32), np.dtype(np.float64)})  # their own work dtype


def as_array(xp, value, dtype):
    """``value`` as an array of exactly ``dtype`` (ufuncs on 0-d arrays return scalars)."""
    if isinstance(value, xp.ndarray) and value.dtype == dtype:
        return value
    return xp.asarray(value).astype(dtype, copy=False)


def legacy_broadcast(B, A_ndim, broadcast, axis):
    """Opset < 7 binary ops: with ``broadcast=1``, B's dims line up with A's from ``axis``
    (default: A's trailing dims), so give B trailing 1s for NumPy broadcasting."""
    if not broadcast or axis is None or B.ndim == 0:
        return B
    axis = axis + A_ndim if axis < 0 else axis
    trailing = A_ndim - axis - B.ndim
    return B.reshape(B.shape + (1,) * trailing) if trailing > 0 else B


def _special(xp, name, x):
    """A scipy.special function (erf, erfc) on NumPy or CuPy arrays (another array module may
    bring its own twin of scipy.special as ``xp.scipy_special``, as the tests' device double does)."""
    if xp is not np:
        special = getattr(xp, "scipy_special", None)
        if special is None:
            import cupyx.scipy.special as special
        return getattr(special, name)(x)
    import scipy.special
    return getattr(scipy.special, name)(x)


def erf(xp, x):
    """The Gauss error function."""
    return _special(xp, "erf", x)


def erfc(xp, x):
    """1 - erf(x), accurate where erf(x) is close to 1."""
    return _special(xp, "erfc", x)


# ---------------------------------------------------------------- unary math

_OLD = (1, 6, 13)   # since-versions of the oldest unary ops (1 has the legacy consumed_inputs)
_TRIG = (7, 22)
_HYP = (9, 22)


@kernel("Abs", since=_OLD, types={"T": NUMERIC})
def Abs(ctx, X, **_legacy):
    """|X|; the most negative signed integer stays itself (two's complement wrap)."""
    if X.dtype.kind in "iu":
        return ctx.xp.abs(X) if X.dtype.kind == "i" else X
    return compute_in(ctx, ctx.xp.abs, X)


@kernel("Neg", since=_OLD, types={"T": FLOATS | SIGNED})
def Neg(ctx, X, **_legacy):
    """-X (integers wrap)."""
    if X.dtype.kind == "i":
        return as_array(ctx.xp, ctx.xp.negative(X), X.dtype)
    return compute_in(ctx, ctx.xp.negative, X)


@kernel("Reciprocal", since=_OLD, types={"T": FLOATS})
def Reciprocal(ctx, X, **_legacy):
    """1 / X."""
    return compute_in(ctx, lambda v: 1 / v, X)


@kernel("Floor", since=_OLD, types={"T": FLOATS})
def Floor(ctx, X, **_legacy):
    """Round down to an integral value."""
    return compute_in(ctx, ctx.xp.floor, X)


@kernel("Ceil", since=_OLD, types={"T": FLOATS})
def Ceil(ctx, X, **_legacy):
    """Round up to an integral value."""
    return compute_in(ctx, ctx.xp.ceil, X)


@kernel("Round", since=(11, 22), types={"T": FLOATS})
def Round(ctx, X):
    """Round to the nearest integral value, halves to even."""
    return compute_in(ctx, ctx.xp.rint, X)


@kernel("Sqrt", since=_OLD, types={"T": FLOATS})
def Sqrt(ctx, X, **_legacy):
    """Square root (NaN for negative X)."""
    return compute_in(ctx, ctx.xp.sqrt, X)


@kernel("Exp", since=_OLD, types={"T": FLOATS})
def Exp(ctx, input, **_legacy):
    """e ** input."""
    return compute_in(ctx, ctx.xp.exp, input)


@kernel("Log", since=_OLD, types={"T": FLOATS})
def Log(ctx, input, **_legacy):
    """Natural logarithm."""
    return compute_in(ctx, ctx.xp.log, input)


@kernel("Sin", since=_TRIG, types={"T": FLOATS})
def Sin(ctx, input):
    """Sine."""
    return compute_in(ctx, ctx.xp.sin, input)


@kernel("Cos", since=_TRIG, types={"T": FLOATS})
def Cos(ctx, input):
    """Cosine."""
    return compute_in(ctx, ctx.xp.cos, input)


@kernel("Tan", since=_TRIG, types={"T": FLOATS})
def Tan(ctx, input):
    """Tangent."""
    return compute_in(ctx, ctx.xp.tan, input)


@kernel("Asin", since=_TRIG, types={"T": FLOATS})
def Asin(ctx, input):
    """Arcsine."""
    return compute_in(ctx, ctx.xp.arcsin, input)


@kernel("Acos", since=_TRIG, types={"T": FLOATS})
def Acos(ctx, input):
    """Arccosine."""
    return compute_in(ctx, ctx.xp.arccos, input)


@kernel("Atan", since=_TRIG, types={"T": FLOATS})
def Atan(ctx, input):
    """Arctangent."""
    return compute_in(ctx, ctx.xp.arctan, input)


@kernel("Sinh", since=_HYP, types={"T": FLOATS})
def Sinh(ctx, input):
    """Hyperbolic sine."""
    return compute_in(ctx, ctx.xp.sinh, input)


@kernel("Cosh", since=_HYP, types={"T": FLOATS})
def Cosh(ctx, input):
    """Hyperbolic cosine."""
    return compute_in(ctx, ctx.xp.cosh, input)


@kernel("Asinh", since=_HYP, types={"T": FLOATS})
def Asinh(ctx, input):
    """Inverse hyperbolic sine."""
    return compute_in(ctx, ctx.xp.arcsinh, input)


@kernel("Acosh", since=_HYP, types={"T": FLOATS})
def Acosh(ctx, input):
    """Inverse hyperbolic cosine."""
    return compute_in(ctx, ctx.xp.arccosh, input)


@kernel("Atanh", since=_HYP, types={"T": FLOATS})
def Atanh(ctx, input):
    """Inverse hyperbolic tangent."""
    return compute_in(ctx, ctx.xp.arctanh, input)


@kernel("Sign", since=(9, 13), types={"T": NUMERIC})
def Sign(ctx, input):
    """-1, 0 or 1 by the sign of each element (NaN stays NaN)."""
    if input.dtype.kind in "iu":
        return as_array(ctx.xp, ctx.xp.sign(input), input.dtype)
    return compute_in(ctx, ctx.xp.sign, input)


@kernel("Erf", since=(9, 13), types={"T": NUMERIC})
def Erf(ctx, input):
    """The Gauss error function."""
    return compute_in(ctx, lambda v: erf(ctx.xp, v), input)


# ---------------------------------------------------------------- binary arithmetic

# Dtypes the array module computes natively (same-dtype in, same dtype out): the hot path.
_NATIVE = frozenset(np.dtype(t) for t in ("float16", "float32", "float64", "int8", "int16", "int32",
                                          "int64", "uint8", "uint16", "uint32", "uint64", "bool"))


_F16 = np.dtype(np.float16)
_HALF_OPS = {np.add: half_compiled.ADD, np.subtract: half_compiled.SUB, np.multiply: half_compiled.MUL,
             np.divide: half_compiled.DIV}


def _arith(ctx, A, B, op, broadcast=0, axis=None):
    if broadcast:
        B = legacy_broadcast(B, A.ndim, broadcast, axis)
    if A.dtype == _F16 and max(A.size, B.size) >= half_compiled.MIN_COMPILED and half_compiled.takes(ctx.xp, A, B):
        # NumPy's float16 ufuncs convert element by element; one float32 +, -, * or / between
        # compiled conversions gives the same bits (a single operation on two halves is exact
        # enough in float32 that rounding it to half is rounding once): same-shape operands in
        # one compiled pass, broadcast ones around NumPy's float32 ufunc
        code = _HALF_OPS.get(op)
        if code is not None and A.shape == B.shape and B.dtype == _F16:
            return half_compiled.half_binary(A, B, code)
        with np.errstate(all="ignore"):
            y = op(half_compiled.widen(A), half_compiled.widen(B))
        return half_compiled.convert(np.asarray(y, np.float32), _F16)
    if A.dtype in _NATIVE:
        y = op(A, B)  # integers wrap; float overflow gives inf (the executor silences warnings)
        return y if type(y) is ctx.xp.ndarray else ctx.xp.asarray(y)
    return compute_in(ctx, op, A, B)


_ARITH = (1, 6, 7, 13, 14)


@kernel("Add", since=_ARITH, types={"T": NUMERIC})
def Add(ctx, A, B, *, broadcast=0, axis=None, **_legacy):
    """A + B (integers wrap)."""
    return _arith(ctx, A, B, ctx.xp.add, broadcast, axis)


@kernel("Sub", since=_ARITH, types={"T": NUMERIC})
def Sub(ctx, A, B, *, broadcast=0, axis=None, **_legacy):
    """A - B (integers wrap)."""
    return _arith(ctx, A, B, ctx.xp.subtract, broadcast, axis)


@kernel("Mul", since=_ARITH, types={"T": NUMERIC})
def Mul(ctx, A, B, *, broadcast=0, axis=None, **_legacy):
    """A * B (integers wrap)."""
    return _arith(ctx, A, B, ctx.xp.multiply, broadcast, axis)


def _check_nonzero(ctx, divisor, what):
    """Integer division by zero fails on the host, as in onnxruntime (the GPU does not check)."""
    if ctx.xp is np and bool((divisor == 0).any()):
        raise Fail(f"Integer {what} by zero")


def _int_divide(xp, a, b):
    """Integer division truncated toward zero (C semantics)."""
    q = xp.floor_divide(a, b)
    if a.dtype.kind == "i":
        inexact = (q * b != a) & ((a < 0) != (b < 0)) & (b != 0)
        q = q + inexact.astype(q.dtype)
    return q


@kernel("Div", since=_ARITH, types={"T": NUMERIC})
def Div(ctx, A, B, *, broadcast=0, axis=None, **_legacy):
    """A / B; integer division truncates toward zero and fails on a zero divisor."""
    if A.dtype.kind in "iu":
        _check_nonzero(ctx, B, "division")
        return _arith(ctx, A, B, functools.partial(_int_divide, ctx.xp), broadcast, axis)
    return _arith(ctx, A, B, ctx.xp.divide, broadcast, axis)


@kernel("Pow", since=(1, 7, 12, 13, 15), types={"T": FLOATS | INDEX, "T1": NUMERIC})
def Pow(ctx, X, Y, *, broadcast=0, axis=None):
    """X ** Y with the dtype of X (Y may have another numeric type)."""
    xp = ctx.xp
    if X.dtype in _AS_IS and Y.dtype == X.dtype and not broadcast:  # float32/float64 ** the same
        with np.errstate(all="ignore"):
            z = xp.power(X, Y)
        return z if type(z) is np.ndarray else as_array(xp, z, X.dtype)
    Y = legacy_broadcast(Y, X.ndim, broadcast, axis)
    with np.errstate(all="ignore"):
        if X.dtype.kind in "iu" and Y.dtype.kind in "iu":
            if bool(xp.any(Y < 0)):  # integer to a negative power: truncate the real result
                z = xp.trunc(xp.power(X.astype(np.float64), Y.astype(np.float64)))
            else:
                z = xp.power(X, Y.astype(X.dtype) if Y.dtype.kind != X.dtype.kind else Y)
            return as_array(xp, z, X.dtype)
        if X.dtype.kind in "iu":   # integer base, float exponent: compute in double
            z = xp.power(X.astype(np.float64), Y.astype(np.float64))
            return as_array(xp, z, X.dtype)
        wdt = work_dtype(X.dtype)
        if Y.dtype.kind == "f" and Y.dtype.itemsize > wdt.itemsize:
            wdt = Y.dtype
        return as_array(xp, xp.power(X.astype(wdt, copy=False), Y.astype(wdt, copy=False)), X.dtype)


@kernel("Mod", since=(10, 13, 28), types={"T": NUMERIC})
def Mod(ctx, A, B, *, fmod=0):
    """Remainder: fmod=0 takes the sign of B (floor division), fmod=1 the sign of A (C fmod)."""
    xp = ctx.xp
    op = xp.fmod if fmod else xp.mod
    if A.dtype.kind in "iu":
        _check_nonzero(ctx, B, "modulo")
        with np.errstate(all="ignore"):
            return as_array(xp, op(A, B), A.dtype)
    return compute_in(ctx, op, A, B)


@kernel("BitShift", since=(11, 28), types={"T": INTEGER})
def BitShift(ctx, X, Y, *, direction):
    """X shifted by Y bits; a shift < 0 or >= the width gives 0 (-1 shifting a negative X right)."""
    xp = ctx.xp
    bits = X.dtype.itemsize * 8
    if Y.dtype.kind == "u":
        valid = Y < bits
    else:
        valid = (Y >= 0) & (Y < bits)
    amount = xp.where(valid, Y, 0).astype(X.dtype)
    if direction == "LEFT":
        shifted = xp.left_shift(X, amount)
        fill = xp.zeros((), dtype=X.dtype)
    elif direction == "RIGHT":
        shifted = xp.right_shift(X, amount)
        signed = X.dtype.kind == "i"
        fill = xp.where(X < 0, -1, 0).astype(X.dtype) if signed else xp.zeros((), X.dtype)
    else:
        raise ValueError(f"BitShift: direction must be 'LEFT' or 'RIGHT', got {direction!r}")
    return as_array(xp, xp.where(valid, shifted, fill), X.dtype)


@kernel("BitwiseAnd", since=18, types={"T": INTEGER})
def BitwiseAnd(ctx, A, B):
    """Bitwise A & B."""
    return as_array(ctx.xp, ctx.xp.bitwise_and(A, B), A.dtype)


@kernel("BitwiseOr", since=18, types={"T": INTEGER})
def BitwiseOr(ctx, A, B):
    """Bitwise A | B."""
    return as_array(ctx.xp, ctx.xp.bitwise_or(A, B), A.dtype)


@kernel("BitwiseXor", since=18, types={"T": INTEGER})
def BitwiseXor(ctx, A, B):
    """Bitwise A ^ B."""
    return as_array(ctx.xp, ctx.xp.bitwise_xor(A, B), A.dtype)


@kernel("BitwiseNot", since=18, types={"T": INTEGER})
def BitwiseNot(ctx, X):
    """Bitwise ~X."""
    return as_array(ctx.xp, ctx.xp.invert(X), X.dtype)


# ---------------------------------------------------------------- variadic reductions

def _fold(ctx, inputs, op, widen=False):
    """Apply the binary ``op`` across 1..N inputs with NumPy broadcasting."""
    if not inputs:
        raise ValueError(f"{ctx.op_type} needs at least one input")
    dt = inputs[0].dtype
    if dt.kind in "iub":
        return as_array(ctx.xp, functools.reduce(op, inputs), dt)
    wdt = work_dtype(dt, widen_half=widen)
    with np.errstate(all="ignore"):
        acc = functools.reduce(op, [x.astype(wdt, copy=False) for x in inputs])
    return as_array(ctx.xp, acc, dt)


_VARIADIC = (1, 6, 8, 13)


@kernel("Max", since=(1, 6, 8, 12, 13), types={"T": NUMERIC})
def Max(ctx, *data_0, **_legacy):
    """Element-wise maximum of the inputs (NaN propagates)."""
    return _fold(ctx, data_0, ctx.xp.maximum)


@kernel("Min", since=(1, 6, 8, 12, 13), types={"T": NUMERIC})
def Min(ctx, *data_0, **_legacy):
    """Element-wise minimum of the inputs (NaN propagates)."""
    return _fold(ctx, data_0, ctx.xp.minimum)


@kernel("Sum", since=_VARIADIC, types={"T": FLOATS})
def Sum(ctx, *data_0, **_legacy):
    """Element-wise sum of the inputs (float16 accumulates in float32)."""
    return _fold(ctx, data_0, ctx.xp.add, widen=True)


@kernel("Mean", since=_VARIADIC, types={"T": FLOATS})
def Mean(ctx, *data_0, **_legacy):
    """Element-wise mean of the inputs (float16 accumulates in float32)."""
    dt = data_0[0].dtype
    wdt = work_dtype(dt, widen_half=True)
    total = functools.reduce(ctx.xp.add, [x.astype(wdt, copy=False) for x in data_0])
    return as_array(ctx.xp, total / len(data_0), dt)


# ---------------------------------------------------------------- Clip and Where

def _clip(ctx, x, lo, hi):
    xp = ctx.xp
    if x.dtype.kind in "iu":
        y = x
        if lo is not None:
            y = xp.maximum(y, lo.astype(x.dtype))
        if hi is not None:
            y = xp.minimum(y, hi.astype(x.dtype))
        return as_array(xp, y, x.dtype)

    def clip(v, *bounds):
        it = iter(bounds)
        if lo is not None:
            v = xp.maximum(v, next(it))
        if hi is not None:
            v = xp.minimum(v, next(it))
        return v

    bounds = [b for b in (lo, hi) if b is not None]
    return compute_in(ctx, clip, x, *[xp.asarray(b).astype(x.dtype) for b in bounds])


@kernel("Clip", since=(1, 6), types={"T": FLOAT})
def ClipWithAttributes(ctx, input, *, min=None, max=None, **_legacy):
    """Clamp to [min, max] given as attributes (opset < 11); a bound left out is open."""
    xp = ctx.xp
    finfo = np.finfo(np.float32)

    def bound(v, open_value):   # opset 6 defaults to +-FLT_MAX, which means no bound
        return None if v is None or v == open_value else xp.asarray(v, dtype=np.float64)

    return _clip(ctx, input, bound(min, float(finfo.min)), bound(max, float(finfo.max)))


@kernel("Clip", since=(11, 12, 13), types={"T": NUMERIC})
def Clip(ctx, input, min=None, max=None):
    """Clamp to [min, max] given as optional scalar inputs; min > max gives max everywhere."""
    return _clip(ctx, input, min, max)


@kernel("Where", since=(9, 16), types={"B": BOOL, "T": STANDARD})
def Where(ctx, condition, X, Y):
    """X where condition is true, else Y, with broadcasting."""
    xp = ctx.xp
    return as_array(xp, xp.where(condition, X, Y), X.dtype)
