"""Compiled body of BatchNormalization in inference: y = x * s[c] + t[c] in one pass, where
NumPy's ``x * inv + shift`` makes two passes and a temporary the size of x (DenseNet-121's 62
batch normalizations after a Concat, which no convolution absorbs, cost 16 ms a run that way)."""
from __future__ import annotations

import numpy as np

from ortgpu.providers.cpu.jit import compiled, split_range


@compiled
def _scale_shift(lo, hi, x, y, s, t, relu):
    """Rows lo..hi of y (N*C, P) = x * s[row % C] + t[row % C], then max(., 0) when `relu`
    (NaN stays NaN, as Relu keeps it)."""
    c_all, p_all = s.shape[0], x.shape[1]
    for q in range(lo, hi):
        a = s[q % c_all]
        b = t[q % c_all]
        xr = x[q]
        yr = y[q]
        if relu:
            zero = a - a
            for i in range(p_all):
                v = xr[i] * a + b
                yr[i] = v if v >= zero or v != v else zero
        else:
            for i in range(p_all):
                yr[i] = xr[i] * a + b


def scale_shift(x: np.ndarray, s: np.ndarray, t: np.ndarray, relu: bool = False) -> np.ndarray:
    """x (N, C, ...) * s[c] + t[c] (then Relu when `relu`) as a new array of x's dtype (x
    float32 or float64; s, t (C,))."""
    n, c = x.shape[:2]
    xx = np.ascontiguousarray(x).reshape(n * c, -1)
    y = np.empty_like(xx)
    split_range(_scale_shift, n * c, xx.shape[1] * 2, xx, y, np.ascontiguousarray(s, dtype=x.dtype).reshape(c),
                np.ascontiguousarray(t, dtype=x.dtype).reshape(c), relu)
    return y.reshape(x.shape)
