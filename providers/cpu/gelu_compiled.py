"""GELU in one compiled pass over each row: the erf form (Gelu, BiasGelu) and the tanh form
(FastGelu), with the optional bias over the last axis added on the way.

The NumPy bodies (activations.gelu_erf / gelu_tanh) make 10-30 array passes (the erfc fit alone
is about 30); these make three loops over a block that stays in the L1 cache: the exponent
argument, exp (exp_compiled.exp_block), the product.  Same formulas as the NumPy bodies, so the
two agree to a few float32 ulps:

* erf: Phi(v) = 1 - erfc(v / sqrt 2) / 2 for v >= 0 and erfc(|v| / sqrt 2) / 2 below (no
  cancellation for negative v), erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2), the Chebyshev
  fit of activations._erfc_f32_block (relative error 1.2e-7 in exact arithmetic);
* tanh: 0.5 v (1 + tanh(u)), u = sqrt(2 / pi) (v + 0.044715 v^3), as v / (1 + e) for u >= 0 and
  v e / (1 + e) below, e = exp(-2|u|) <= 1 (no overflow, no cancellation).

float32 only (float16 is widened and rounded once by the caller; float64 keeps NumPy).
"""
from __future__ import annotations

import math

import numpy as np

from ortgpu.providers.cpu.exp_compiled import exp_block, segment_length, tiled
from ortgpu.providers.cpu.jit import compiled_with, split_range

BLOCK = 1024
WORK_PER_ELEMENT = 12   # split_range's multiply-add units: ~1 ns per element


@compiled_with("contract")
def _gelu_erf_segments(lo, hi, x, row_bias, y):
    """y = gelu_erf(x + bias) over segments lo..hi of the flat float32 x, bias over its rows."""
    bias = tiled(row_bias, BLOCK)
    seg = bias.shape[0]
    arg = np.empty(seg, np.float32)
    tt = np.empty(seg, np.float32)
    scratch = np.empty(seg, np.float32)
    rsqrt2 = np.float32(1 / math.sqrt(2))
    one = np.float32(1.0)
    half = np.float32(0.5)
    for q in range(lo, hi):
        c0 = q * seg
        c1 = min(c0 + seg, x.shape[0])
        n = c1 - c0
        xs, bs, ys = x[c0:c1], bias[:n], y[c0:c1]
        for i in range(n):
            z = abs(xs[i] + bs[i]) * rsqrt2
            t = one / (one + half * z)
            p = np.float32(0.17087277)
            p = p * t + np.float32(-0.82215223)
            p = p * t + np.float32(1.48851587)
            p = p * t + np.float32(-1.13520398)
            p = p * t + np.float32(0.27886807)
            p = p * t + np.float32(-0.18628806)
            p = p * t + np.float32(0.09678418)
            p = p * t + np.float32(0.37409196)
            p = p * t + np.float32(1.00002368)
            p = p * t + np.float32(-1.26551223)
            arg[i] = p - z * z
            tt[i] = t
        exp_block(arg[:n], scratch)
        for i in range(n):
            v = xs[i] + bs[i]
            h = half * tt[i] * arg[i]                 # erfc(|v| / sqrt 2) / 2
            ys[i] = v * (h if v < 0 else one - h)


@compiled_with("contract")
def _gelu_tanh_segments(lo, hi, x, row_bias, y):
    """y = gelu_tanh(x + bias) over segments lo..hi of the flat float32 x, bias over its rows."""
    bias = tiled(row_bias, BLOCK)
    seg = bias.shape[0]
    e = np.empty(seg, np.float32)
    scratch = np.empty(seg, np.float32)
    k = np.float32(-2 * math.sqrt(2 / math.pi))
    c = np.float32(0.044715)
    one = np.float32(1.0)
    for q in range(lo, hi):
        c0 = q * seg
        c1 = min(c0 + seg, x.shape[0])
        n = c1 - c0
        xs, bs, ys = x[c0:c1], bias[:n], y[c0:c1]
        for i in range(n):
            v = xs[i] + bs[i]
            e[i] = -abs(k * (v + c * v * v * v))      # -2|u|
        exp_block(e[:n], scratch)
        for i in range(n):
            v = xs[i] + bs[i]
            u_neg = (v + c * v * v * v) < 0
            ys[i] = (v * e[i] if u_neg else v) / (one + e[i])


def gelu(x: np.ndarray, bias: np.ndarray | None, approximate: str) -> np.ndarray:
    """GELU of the float32 x (+ bias over the last axis), float32; approximate 'none' or 'tanh'."""
    flat = np.ascontiguousarray(x).reshape(-1)
    if bias is None:   # no bias: rows of any width
        b = np.zeros(max(1, min(BLOCK, flat.shape[0])), np.float32)
    else:
        b = np.ascontiguousarray(bias, np.float32).reshape(-1)
    y = np.empty_like(flat)
    body = _gelu_tanh_segments if approximate == "tanh" else _gelu_erf_segments
    seg = segment_length(b.shape[0], BLOCK)
    split_range(body, -(-flat.shape[0] // seg), seg * WORK_PER_ELEMENT, flat, b, y)
    return y.reshape(np.shape(x))
