"""Raw CUDA launchers for activations: Relu, LeakyRelu, Sigmoid, Tanh, Gelu (erf and tanh
forms), Erf, HardSigmoid, HardSwish, Softplus, Elu and Clip (source: activations.cu).

Float types (float32, float16 computed in float32, float64); Relu also int32 and int64.
Other types, Clip bounds of another type or with more than one element, and unknown
attribute values go to the shared kernels of ``providers/kernels/activations.py`` and
``elementwise.py``, whose formulas the CUDA source follows.

Never run on a GPU yet: written and compile-checked without a device.
"""
from __future__ import annotations

import numpy as np

from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.kernels import activations as shared
from ortgpu.providers.kernels import elementwise as shared_elementwise
from ortgpu.providers.dtype_sets import FLOAT, FLOATS, INTEGER, SIGNED
from ortgpu.providers.registry import kernel

SOURCE = "activations.cu"
# UnaryOp codes of activations.cu
OPS = {"Relu": 0, "LeakyRelu": 1, "Sigmoid": 2, "Tanh": 3, "GeluErf": 4, "GeluTanh": 5,
       "Erf": 6, "HardSigmoid": 7, "HardSwish": 8, "Softplus": 9, "Elu": 10}
INT_TYPES = (np.dtype(np.int32), np.dtype(np.int64))


def ops_for(dtype) -> list[str]:
    """The ops instantiated for an element type: all for floats, Relu for integers."""
    return list(OPS) if np.dtype(dtype).kind == "f" else ["Relu"]


def unary_name(ctype: str, op: str) -> str:
    return f"unary_flat<{ctype}, {OPS[op]}>"


def clip_name(ctype: str) -> str:
    return f"clip_flat<{ctype}>"


def _names(dtype):
    ctype = cu.CTYPE[dtype]
    yield from (unary_name(ctype, op) for op in ops_for(dtype))
    if np.dtype(dtype).kind == "f":
        yield clip_name(ctype)


UNITS = {dt: cu.declare(SOURCE, cu.CTYPE[dt], _names(dt)) for dt in cu.FLOAT_TYPES + INT_TYPES}


def run_unary(op: str, X, p0=0.0, p1=0.0):
    """``op(X)`` on the GPU with attributes p0, p1 (alpha, beta), or None when not handled."""
    dt = X.dtype
    if dt not in UNITS or op not in ops_for(dt):
        return None
    import cupy

    x = cupy.ascontiguousarray(X)
    y = cupy.empty(x.shape, dtype=dt)
    if x.size:
        fn = cu.function(UNITS[dt], unary_name(cu.CTYPE[dt], op))
        cu.launch_elementwise(fn, x.size, (x, y, np.int64(x.size),
                                           cu.compute_scalar(dt, p0), cu.compute_scalar(dt, p1)))
    return y


def _unary(ctx, op, X, fallback, p0=0.0, p1=0.0):
    if cu.on_device(ctx, X):
        y = run_unary(op, X, p0, p1)
        if y is not None:
            return y
    return fallback()


@kernel("Relu", since=(1, 6, 13, 14), provider="cuda", types={"T": FLOATS | SIGNED})
def Relu(ctx, X, **_legacy):
    """max(X, 0) (raw CUDA for float types, int32 and int64)."""
    return _unary(ctx, "Relu", X, lambda: shared.Relu(ctx, X))


@kernel("LeakyRelu", since=(1, 6, 16), provider="cuda", types={"T": FLOATS})
def LeakyRelu(ctx, X, *, alpha=0.01, **_legacy):
    """X for X >= 0, alpha * X below (raw CUDA)."""
    return _unary(ctx, "LeakyRelu", X, lambda: shared.LeakyRelu(ctx, X, alpha=alpha), alpha)


@kernel("Sigmoid", since=(1, 6, 13), provider="cuda", types={"T": FLOATS})
def Sigmoid(ctx, X, **_legacy):
    """1 / (1 + exp(-X)) (raw CUDA)."""
    return _unary(ctx, "Sigmoid", X, lambda: shared.Sigmoid(ctx, X))


@kernel("Tanh", since=(1, 6, 13), provider="cuda", types={"T": FLOATS})
def Tanh(ctx, input, **_legacy):
    """Hyperbolic tangent (raw CUDA)."""
    return _unary(ctx, "Tanh", input, lambda: shared.Tanh(ctx, input))


@kernel("Gelu", since=20, provider="cuda", types={"T": FLOATS})
def Gelu(ctx, X, *, approximate="none"):
    """X * Phi(X), exact or approximate='tanh' (raw CUDA)."""
    op = {"none": "GeluErf", "tanh": "GeluTanh"}.get(approximate)
    fallback = lambda: shared.Gelu(ctx, X, approximate=approximate)  # noqa: E731
    return fallback() if op is None else _unary(ctx, op, X, fallback)


@kernel("Erf", since=(9, 13), provider="cuda", types={"T": INTEGER | FLOATS})
def Erf(ctx, input):
    """The Gauss error function (raw CUDA for float types)."""
    return _unary(ctx, "Erf", input, lambda: shared_elementwise.Erf(ctx, input))


@kernel("HardSigmoid", since=(1, 6, 22), provider="cuda", types={"T": FLOATS})
def HardSigmoid(ctx, X, *, alpha=0.2, beta=0.5, **_legacy):
    """max(0, min(1, alpha * X + beta)) (raw CUDA)."""
    return _unary(ctx, "HardSigmoid", X,
                  lambda: shared.HardSigmoid(ctx, X, alpha=alpha, beta=beta), alpha, beta)


@kernel("HardSwish", since=(14, 22), provider="cuda", types={"T": FLOATS})
def HardSwish(ctx, X):
    """X * max(0, min(1, X / 6 + 1 / 2)) (raw CUDA)."""
    return _unary(ctx, "HardSwish", X, lambda: shared.HardSwish(ctx, X))


@kernel("Softplus", since=(1, 22), provider="cuda", types={"T": FLOATS})
def Softplus(ctx, X):
    """log(1 + exp(X)) without overflow (raw CUDA)."""
    return _unary(ctx, "Softplus", X, lambda: shared.Softplus(ctx, X))


@kernel("Elu", since=(1, 6, 22), provider="cuda", types={"T": FLOATS})
def Elu(ctx, X, *, alpha=1.0, **_legacy):
    """X for X >= 0, alpha * (exp(X) - 1) below (raw CUDA)."""
    return _unary(ctx, "Elu", X, lambda: shared.Elu(ctx, X, alpha=alpha), alpha)


# ---------------------------------------------------------------- Clip

def _bound_ok(bound, dtype) -> bool:
    return bound is None or (bound.dtype == dtype and bound.size == 1)


def run_clip(X, lo_array=None, hi_array=None, lo_value=None, hi_value=None):
    """Clip on the GPU with bounds from one-element device arrays or host values (already
    converted to X's dtype), or None when not handled here."""
    dt = X.dtype
    if dt not in cu.FLOAT_TYPES or not (_bound_ok(lo_array, dt) and _bound_ok(hi_array, dt)):
        return None
    import cupy

    x = cupy.ascontiguousarray(X)
    y = cupy.empty(x.shape, dtype=dt)
    if x.size:
        fn = cu.function(UNITS[dt], clip_name(cu.CTYPE[dt]))
        cu.launch_elementwise(fn, x.size, (
            x, y, np.int64(x.size), lo_array, hi_array,
            cu.compute_scalar(dt, 0 if lo_value is None else lo_value),
            cu.compute_scalar(dt, 0 if hi_value is None else hi_value),
            np.int32(lo_value is not None), np.int32(hi_value is not None)))
    return y


@kernel("Clip", since=(1, 6), provider="cuda", types={"T": FLOAT})
def ClipWithAttributes(ctx, input, *, min=None, max=None, **_legacy):
    """Clamp to [min, max] given as attributes (raw CUDA for float types)."""
    if cu.on_device(ctx, input) and input.dtype in cu.FLOAT_TYPES:
        finfo = np.finfo(np.float32)

        def bound(v, open_value):   # as the shared kernel: +-FLT_MAX means no bound
            if v is None or v == open_value:
                return None
            return np.asarray(v, dtype=np.float64).astype(input.dtype)  # rounded as the shared kernel

        y = run_clip(input, lo_value=bound(min, float(finfo.min)),
                     hi_value=bound(max, float(finfo.max)))
        if y is not None:
            return y
    return shared_elementwise.ClipWithAttributes(ctx, input, min=min, max=max, **_legacy)


@kernel("Clip", since=(11, 12, 13), provider="cuda", types={"T": INTEGER | FLOATS})
def Clip(ctx, input, min=None, max=None):
    """Clamp to [min, max] given as optional one-element inputs (raw CUDA for float types)."""
    if cu.on_device(ctx, input, min, max):
        y = run_clip(input, lo_array=min, hi_array=max)
        if y is not None:
            return y
    return shared_elementwise.Clip(ctx, input, min, max)
