"""Reductions (ReduceSum ... ReduceSumSquare) and cumulative ops (CumSum, CumProd).

Every Reduce op exists in two forms: up to some opset the axes are an attribute, after
it they are an optional int64 input with ``noop_with_empty_axes`` (ReduceSum moved at 13,
the others at 18).  Small float types (float16, bfloat16, float8) are accumulated in
float32 and cast back; the result always has the input's element type.
"""
from __future__ import annotations

import math

import numpy as np

from ortgpu.errors import InvalidArgument
from ortgpu.providers.dtype_sets import BFLOAT16, BOOL, FLOATS, INDEX
from ortgpu.providers.registry import kernel


def work_dtype(dtype) -> np.dtype:
    """The dtype to compute in: float32 for float16/bfloat16/float8, else the dtype itself."""
    dt = np.dtype(dtype)
    if dt == np.float64 or dt == np.float32 or dt.kind in "iub" or dt.kind == "c":
        return dt
    return np.dtype(np.float32)  # float16 and the ml_dtypes small floats


def float_work_dtype(dtype) -> np.dtype:
    """A float dtype to compute in: float64 for float64 input, float32 for everything else."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def normalize_axes(axes, ndim: int) -> tuple[int, ...]:
    """Axes as sorted non-negative ints, checked against the rank."""
    out = set()
    for a in axes:
        a = int(a)
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor of rank {ndim}")
        out.add(a % ndim if ndim else 0)
    return tuple(sorted(out))


def _reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


# Each reduction: (compute on the working array, value of the reduction over an empty set,
# elementwise result when noop_with_empty_axes leaves the data unreduced).
def _sum(xp, x, axes, keepdims):
    return xp.sum(x, axis=axes, keepdims=keepdims, dtype=x.dtype)


def _mean(xp, x, axes, keepdims):
    if x.dtype.kind in "iu":
        n = int(np.prod([x.shape[a] for a in axes])) if axes else 1
        s = xp.sum(x, axis=axes, keepdims=keepdims, dtype=x.dtype)
        return xp.sign(s) * (xp.abs(s) // max(n, 1))  # integer division truncating toward zero
    if xp is np and x.dtype.kind == "f" and x.dtype.itemsize >= 4:
        # np.mean's sum without its Python wrapper (a few us on tiny tensors).  np.mean divides
        # in float64 and rounds to float32; dividing by a count exact in float32 (< 2**24) rounds
        # once to the same float32 (float64 has more than twice float32's bits), so the bits agree
        n = x.size if axes is None else math.prod([x.shape[a] for a in axes])
        if 0 < n < 1 << 24:
            return np.add.reduce(x, axis=axes, keepdims=keepdims) / n
    return xp.mean(x, axis=axes, keepdims=keepdims)


def _max(xp, x, axes, keepdims):
    return xp.max(x, axis=axes, keepdims=keepdims)


def _min(xp, x, axes, keepdims):
    return xp.min(x, axis=axes, keepdims=keepdims)


def _prod(xp, x, axes, keepdims):
    return xp.prod(x, axis=axes, keepdims=keepdims, dtype=x.dtype)


def _l1(xp, x, axes, keepdims):
    return xp.sum(xp.abs(x), axis=axes, keepdims=keepdims, dtype=x.dtype)


def _l2(xp, x, axes, keepdims):
    s = xp.sum(x * x, axis=axes, keepdims=keepdims, dtype=x.dtype)
    if x.dtype.kind in "iu":
        return xp.sqrt(s.astype(np.float64)).astype(x.dtype)
    return xp.sqrt(s)


def _log_sum(xp, x, axes, keepdims):
    return xp.log(xp.sum(x, axis=axes, keepdims=keepdims))


def _log_sum_exp(xp, x, axes, keepdims):
    m = xp.max(x, axis=axes, keepdims=True)
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    s = xp.log(xp.sum(xp.exp(x - m), axis=axes, keepdims=True)) + m
    return s if keepdims else xp.squeeze(s, axis=axes)


def _sum_square(xp, x, axes, keepdims):
    return xp.sum(x * x, axis=axes, keepdims=keepdims, dtype=x.dtype)


def _low(dtype):
    if dtype == np.bool_:
        return False
    if dtype.kind in "iu":
        return np.iinfo(dtype).min
    return -np.inf


def _high(dtype):
    if dtype == np.bool_:
        return True
    if dtype.kind in "iu":
        return np.iinfo(dtype).max
    return np.inf


_REDUCTIONS = {
    # name: (compute, empty-set value (fn of working dtype), noop elementwise (None: identity))
    "ReduceSum": (_sum, lambda dt: 0, None),
    "ReduceMean": (_mean, lambda dt: 0, None),  # onnxruntime: 0, not the NaN of 0 / 0
    "ReduceMax": (_max, _low, None),
    "ReduceMin": (_min, _high, None),
    "ReduceProd": (_prod, lambda dt: 1, None),
    "ReduceL1": (_l1, lambda dt: 0, lambda xp, x: xp.abs(x)),
    "ReduceL2": (_l2, lambda dt: 0, lambda xp, x: xp.abs(x)),
    "ReduceLogSum": (_log_sum, lambda dt: -np.inf, lambda xp, x: xp.log(x)),
    "ReduceLogSumExp": (_log_sum_exp, lambda dt: -np.inf, None),
    "ReduceSumSquare": (_sum_square, lambda dt: 0, lambda xp, x: x * x),
}


def reduce(ctx, name: str, data, axes, keepdims: int, noop: bool = False):
    """Apply the reduction `name` over `axes` (None or empty: all axes, unless `noop`)."""
    xp = ctx.xp
    compute, empty_value, elementwise = _REDUCTIONS[name]
    out_dtype = data.dtype
    if xp is np and out_dtype in _PLAIN_FLOATS and axes is not None and len(axes) == 1:
        # one axis of a float32/float64 host tensor (the usual case): the checks below, for it
        rank, a = data.ndim, int(axes[0])
        if -rank <= a < rank and data.shape[a] != 0:
            r = compute(xp, data, (a + rank if a < 0 else a,), keepdims == 1)
            r = r if type(r) is np.ndarray else np.asarray(r)
            return r if r.dtype == out_dtype else r.astype(out_dtype)
    wdt = work_dtype(out_dtype) if out_dtype != np.bool_ else np.dtype(np.bool_)
    x = data if data.dtype == wdt else data.astype(wdt)
    if axes is None or len(axes) == 0:
        if noop:
            r = x if elementwise is None else elementwise(xp, x)
            return r.astype(out_dtype, copy=False) if r.dtype != out_dtype else r
        axes = tuple(range(data.ndim))
    else:
        axes = normalize_axes(axes, data.ndim)
    keepdims = keepdims == 1  # onnxruntime keeps the reduced axes only for exactly 1 (2 and -1 drop them)
    if any(data.shape[a] == 0 for a in axes):  # reduction over an empty set: its identity
        shape = _reduced_shape(data.shape, axes, keepdims)
        return xp.full(shape, empty_value(wdt), dtype=wdt).astype(out_dtype)
    if data.ndim == 0:
        r = compute(xp, x, None, keepdims)
    else:
        r = compute(xp, x, axes, keepdims)
    r = xp.asarray(r)
    return r if r.dtype == out_dtype else r.astype(out_dtype)


_PLAIN_FLOATS = frozenset({np.dtype(np.float32), np.dtype(np.float64)})  # computed as they are


def _axes_from_input(axes):
    if axes is None:
        return None
    return [int(a) for a in np.asarray(axes).reshape(-1)]


def _register(name: str, attr_versions, input_versions):
    def with_axes_attribute(ctx, data, *, axes=None, keepdims=1):
        return reduce(ctx, name, data, axes, keepdims)

    def with_axes_input(ctx, data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
        return reduce(ctx, name, data, _axes_from_input(axes), keepdims, noop_with_empty_axes == 1)

    for fn, how in ((with_axes_attribute, "axes as an attribute"), (with_axes_input, "axes as an input")):
        fn.__name__ = fn.__qualname__ = f"{name}_{fn.__name__}"
        fn.__doc__ = f"{name} with {how}; small floats accumulate in float32."
    attr_types, input_types = TYPES[name]
    kernel(name, since=attr_versions, types={"T": attr_types})(with_axes_attribute)
    kernel(name, since=input_versions, types={"T": input_types}, host_inputs=(1,))(with_axes_input)


# op -> (since-versions with `axes` as an attribute, since-versions with `axes` as an input);
# the CUDA kernels of providers/cuda/kernels/reduce.py register the same versions.
# op -> (element types of the form with `axes` as an attribute, of the form with it as an input)
SUMMABLE = FLOATS | INDEX | frozenset({"uint32", "uint64"})
ORDERED = SUMMABLE | frozenset({"int8", "uint8"})   # ReduceMax/ReduceMin (and bool from opset 18)
TYPES = {"ReduceSum": (SUMMABLE - BFLOAT16, SUMMABLE)}
TYPES.update({op: (SUMMABLE, SUMMABLE) for op in ("ReduceMean", "ReduceProd", "ReduceL1", "ReduceL2",
                                                  "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp")})
TYPES.update({op: (ORDERED, ORDERED | BOOL) for op in ("ReduceMax", "ReduceMin")})
VERSIONS = {"ReduceSum": ((1, 11), (13,))}
VERSIONS.update({op: ((1, 11, 13), (18,)) for op in
                 ("ReduceMean", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare")})
VERSIONS.update({op: ((1, 11, 13), (18, 28)) for op in ("ReduceLogSum", "ReduceLogSumExp")})
VERSIONS.update({op: ((1, 11, 12, 13), (18, 20)) for op in ("ReduceMax", "ReduceMin")})
for _name, (_attr_versions, _input_versions) in VERSIONS.items():
    _register(_name, _attr_versions, _input_versions)


def _scalar_axis(axis, ndim):
    arr = np.asarray(axis)
    if arr.ndim > 1 or arr.size == 0:  # onnxruntime's check; the spec asks for a scalar
        raise InvalidArgument(f"Axis tensor should be 0D or 1D (with one element), got shape {list(arr.shape)}")
    a = int(arr.reshape(-1)[0])
    if not -ndim <= a < ndim:
        raise ValueError(f"axis {a} is out of range for a tensor of rank {ndim}")
    return a % ndim


def _cumulative(ctx, x, axis, exclusive, reverse, op, identity):
    xp = ctx.xp
    ax = _scalar_axis(axis, x.ndim)
    wdt = work_dtype(x.dtype)
    w = x if x.dtype == wdt else x.astype(wdt)
    if reverse:
        w = xp.flip(w, axis=ax)
    r = op(w, axis=ax, dtype=wdt)
    if exclusive and x.shape[ax] > 0:
        head_shape = list(x.shape)
        head_shape[ax] = 1
        head = xp.full(head_shape, identity, dtype=wdt)
        body = xp.take(r, xp.arange(x.shape[ax] - 1), axis=ax)
        r = xp.concatenate([head, body], axis=ax)
    if reverse:
        r = xp.flip(r, axis=ax)
    return xp.ascontiguousarray(r).astype(x.dtype, copy=False)


@kernel("CumSum", since=(11, 14),
        types={"T": FLOATS | INDEX | frozenset({"uint32", "uint64"}), "T2": INDEX}, host_inputs=(1,))
def CumSum(ctx, x, axis, *, exclusive=0, reverse=0):
    """Cumulative sum along `axis` (a scalar input); exclusive shifts in a 0, reverse runs backwards."""
    return _cumulative(ctx, x, axis, exclusive, reverse, ctx.xp.cumsum, 0)


@kernel("CumProd", since=26,
        types={"T": FLOATS | INDEX | frozenset({"uint32", "uint64"}), "T2": INDEX}, host_inputs=(1,))
def CumProd(ctx, x, axis, *, exclusive=0, reverse=0):
    """Cumulative product along `axis`; exclusive shifts in a 1, reverse runs backwards."""
    return _cumulative(ctx, x, axis, exclusive, reverse, ctx.xp.cumprod, 1)
