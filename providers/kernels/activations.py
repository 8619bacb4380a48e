"""Activation functions.  Formulas run in float32 for float16/bfloat16 inputs (one
rounding at the end) and in the input's own precision for float32/float64."""
from __future__ import annotations

import math

import numpy as np

from ortgpu.providers.cpu import half_compiled
from ortgpu.providers.cpu.gelu_compiled import gelu as compiled_gelu
from ortgpu.providers.kernels.elementwise import as_array, compute_in, erfc
from ortgpu.providers.dtype_sets import FLOAT, FLOATS, INDEX, INTEGER, SIGNED
from ortgpu.providers.registry import kernel


def _act(ctx, fn, *arrays):
    return compute_in(ctx, fn, *arrays, widen_half=True)


def _sigmoid(xp, x):
    """1 / (1 + exp(-x)) in one fresh array updated in place: four passes and no temporaries
    (a sign-guarded np.where form took 3.4 ms on 480x640, this 0.26 ms).  For x below about -88
    (float32) exp(-x) overflows to inf and the result is 0, where the exact value is under the
    smallest normal float; there is no cancellation anywhere else."""
    y = xp.asarray(xp.negative(x))
    with np.errstate(over="ignore"):
        xp.exp(y, out=y)
    y += 1
    return xp.reciprocal(y, out=y)


def gelu_tanh(xp, x):
    """The tanh approximation of GELU, 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3),
    written as x / (1 + exp(-2u)): the same value with no cancellation for negative x (where
    1 + tanh(u) would lose every digit), and without the np.where of a guarded sigmoid, which on
    a random sign mask cost most of the time (measured 228 us against about 40 us for this on a
    (4, 32, 128) float32 block).  exp overflows to inf for u < -44, giving the limit -0.  One
    fresh array updated in place; x is left alone.  (Callers silence floating-point warnings.)"""
    k = -2 * math.sqrt(2 / math.pi)
    t = xp.asarray(x * x)
    t *= 0.044715 * k
    t += k
    t *= x                    # -2u
    t = xp.asarray(xp.exp(t))
    t += 1
    return xp.asarray(x / t)


# Chebyshev fit of erfc (Numerical Recipes' erfcc): erfc(z) = t exp(-z^2 + P(t)), t = 1/(1 + z/2),
# z >= 0, fractional error below 1.2e-7 in exact arithmetic; constant term first.
_ERFC_FIT = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807,
             -1.13520398, 1.48851587, -0.82215223, 0.17087277)
_FAST_ERFC_MIN = 2048   # below this the fit's 30 ufunc calls cost more than scipy's one


_ERFC_CHUNK = 16384    # elements per block of passes: 64 KiB of float32 stays in the L2 cache


def _erfc_f32(x):
    """erfc of a float32 NumPy array, in cache-sized chunks (the fit makes ~30 passes; over a
    block larger than the cache each would go to memory and the fit would lose to scipy)."""
    if x.size <= _ERFC_CHUNK:
        return _erfc_f32_block(x)
    flat = x.reshape(-1)
    out = np.empty(flat.shape, np.float32)
    for start in range(0, flat.size, _ERFC_CHUNK):
        out[start:start + _ERFC_CHUNK] = _erfc_f32_block(flat[start:start + _ERFC_CHUNK])
    return out.reshape(x.shape)


def _erfc_f32_block(x):
    """erfc of a float32 NumPy array in about 30 vectorised float32 passes: scipy's erfc runs a
    scalar double-precision routine per element, 2.4x slower on a (4, 32, 128) block (measured
    100 us against 240 us).  Relative error against float64 erfc: at most 5 float32 ulps where
    erfc > 1e-2, 11 ulps where erfc > 1e-7, 8e-6 in the far tail before float32 underflows
    (scipy's: half an ulp); GELU's own float32 rounding is of the same order.  Negative z uses
    erfc(z) = 2 - erfc(-z), blended arithmetically (np.where on a random mask is slower)."""
    f32 = np.float32
    z = np.abs(x)
    t = z * f32(0.5)
    t += 1
    np.reciprocal(t, out=t)
    p = t * f32(_ERFC_FIT[-1])
    for c in _ERFC_FIT[-2:0:-1]:
        p += f32(c)
        p *= t
    p += f32(_ERFC_FIT[0])
    z *= z
    p -= z
    np.exp(p, out=p)
    p *= t
    neg = (x < 0).astype(f32)      # 2 - p where x < 0: p + neg * (2 - 2p)
    q = p * f32(-2)
    q += 2
    q *= neg
    q += p
    return q


def gelu_erf(xp, x):
    """Exact GELU, x * Phi(x) = 0.5 x erfc(-x / sqrt(2)) (no cancellation for negative x), with
    the products done in place on erfc's fresh result."""
    z = x * -(1 / math.sqrt(2))
    if xp is np and isinstance(z, np.ndarray) and z.dtype == np.float32 and z.size >= _FAST_ERFC_MIN:
        t = _erfc_f32(z)
    else:
        t = xp.asarray(erfc(xp, z))
    t *= x
    t *= 0.5
    return t


def _softplus(xp, x):
    """log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|))."""
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


@kernel("Relu", since=(1, 6, 13, 14), types={"T": FLOATS | SIGNED})
def Relu(ctx, X, **_legacy):
    """max(X, 0); integers too from opset 14."""
    xp = ctx.xp
    if X.dtype.kind in "iu":
        return as_array(xp, xp.maximum(X, 0), X.dtype)
    return compute_in(ctx, lambda x: xp.maximum(x, 0), X)


@kernel("LeakyRelu", since=(1, 6, 16), types={"T": FLOATS})
def LeakyRelu(ctx, X, *, alpha=0.01, **_legacy):
    """X for X >= 0, alpha * X below."""
    xp = ctx.xp
    return _act(ctx, lambda x: xp.where(x < 0, x * alpha, x), X)


@kernel("PRelu", since=(1, 6, 7, 9, 16),
        types={"T": FLOATS | INDEX | frozenset({"uint32", "uint64"})})
def PRelu(ctx, X, slope, **_legacy):
    """X for X >= 0, slope * X below; before opset 7 a 1-D slope applies per channel (axis 1)."""
    xp = ctx.xp
    if ctx.opset < 7 and slope.ndim == 1 and X.ndim >= 2 and slope.shape[0] == X.shape[1] != 1:
        slope = slope.reshape((-1,) + (1,) * (X.ndim - 2))
    if X.dtype.kind in "iu":
        return as_array(xp, xp.where(X < 0, X * slope.astype(X.dtype), X), X.dtype)
    return _act(ctx, lambda x, s: xp.where(x < 0, x * s, x), X, slope)


@kernel("Elu", since=(1, 6, 22), types={"T": FLOATS})
def Elu(ctx, X, *, alpha=1.0, **_legacy):
    """X for X >= 0, alpha * (exp(X) - 1) below."""
    xp = ctx.xp
    return _act(ctx, lambda x: xp.where(x < 0, alpha * xp.expm1(x), x), X)


@kernel("Selu", since=(1, 6, 22), types={"T": FLOATS})
def Selu(ctx, X, *, alpha=1.67326319217681884765625, gamma=1.05070102214813232421875, **_legacy):
    """gamma * X for X > 0, gamma * alpha * (exp(X) - 1) otherwise."""
    xp = ctx.xp
    return _act(ctx, lambda x: gamma * xp.where(x > 0, x, alpha * xp.expm1(x)), X)


@kernel("Celu", since=(12, 28), types={"T": FLOATS})
def Celu(ctx, X, *, alpha=1.0):
    """max(0, X) + min(0, alpha * (exp(X / alpha) - 1))."""
    xp = ctx.xp
    return _act(ctx, lambda x: xp.maximum(x, 0) + xp.minimum(0, alpha * xp.expm1(x / alpha)), X)


@kernel("Sigmoid", since=(1, 6, 13), types={"T": FLOATS})
def Sigmoid(ctx, X, **_legacy):
    """1 / (1 + exp(-X))."""
    return _act(ctx, lambda x: _sigmoid(ctx.xp, x), X)


@kernel("HardSigmoid", since=(1, 6, 22), types={"T": FLOATS})
def HardSigmoid(ctx, X, *, alpha=0.2, beta=0.5, **_legacy):
    """max(0, min(1, alpha * X + beta))."""
    xp = ctx.xp
    return _act(ctx, lambda x: xp.clip(x * alpha + beta, 0, 1), X)


@kernel("HardSwish", since=(14, 22), types={"T": FLOATS})
def HardSwish(ctx, X):
    """X * max(0, min(1, X / 6 + 1 / 2))."""
    xp = ctx.xp
    return _act(ctx, lambda x: x * xp.clip(x * (1 / 6) + 0.5, 0, 1), X)


@kernel("Tanh", since=(1, 6, 13), types={"T": FLOATS})
def Tanh(ctx, input, **_legacy):
    """Hyperbolic tangent."""
    return _act(ctx, ctx.xp.tanh, input)


@kernel("Softplus", since=(1, 22), types={"T": FLOATS})
def Softplus(ctx, X):
    """log(1 + exp(X)), computed without overflow."""
    return _act(ctx, lambda x: _softplus(ctx.xp, x), X)


@kernel("Softsign", since=(1, 22), types={"T": FLOATS})
def Softsign(ctx, input):
    """X / (1 + |X|)."""
    xp = ctx.xp
    return _act(ctx, lambda x: x / (1 + xp.abs(x)), input)


@kernel("Gelu", since=20, types={"T": FLOATS})
def Gelu(ctx, X, *, approximate="none"):
    """X * Phi(X), exact (erfc form) or with approximate='tanh'; no cancellation for negative X."""
    xp = ctx.xp
    if approximate not in ("none", "tanh"):
        raise ValueError(f"Gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    if half_compiled.takes(xp, X):   # one compiled pass (providers/cpu/gelu_compiled.py)
        y = compiled_gelu(half_compiled.widen(X), None, approximate)
        return half_compiled.convert(y, X.dtype)
    if approximate == "tanh":
        return _act(ctx, lambda x: gelu_tanh(xp, x), X)
    return _act(ctx, lambda x: gelu_erf(xp, x), X)


@kernel("Mish", since=(18, 22), types={"T": FLOATS})
def Mish(ctx, X):
    """X * tanh(softplus(X))."""
    xp = ctx.xp
    return _act(ctx, lambda x: x * xp.tanh(_softplus(xp, x)), X)


@kernel("Shrink", since=9, types={"T": INTEGER | FLOAT})
def Shrink(ctx, input, *, bias=0.0, lambd=0.5):
    """input + bias below -lambd, input - bias above lambd, 0 in between."""
    xp = ctx.xp

    def shrink(x):
        return xp.where(x < -lambd, x + bias, xp.where(x > lambd, x - bias, 0))

    if input.dtype.kind in "iu":   # integers: the float result truncated back
        with np.errstate(all="ignore"):
            return as_array(xp, shrink(input.astype(np.float64)), input.dtype)
    return _act(ctx, shrink, input)


@kernel("ThresholdedRelu", since=(10, 22), types={"T": FLOATS})
def ThresholdedRelu(ctx, X, *, alpha=1.0):
    """X where X > alpha, else 0."""
    xp = ctx.xp
    return _act(ctx, lambda x: xp.where(x > alpha, x, 0), X)


@kernel("Swish", since=24, types={"T": FLOATS})
def Swish(ctx, X, *, alpha=1.0):
    """X * sigmoid(alpha * X)."""
    xp = ctx.xp
    return _act(ctx, lambda x: x * _sigmoid(xp, x * alpha), X)
