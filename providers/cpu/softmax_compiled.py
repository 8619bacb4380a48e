"""Softmax over the last axis as a compiled row kernel (the Softmax op over trailing axes, and the
attention probabilities inside Attention / MultiHeadAttention).

NumPy's max and sum over a short last axis pay a set-up per call that dwarfs the work (on a
(4, 2, 32, 32) block of attention scores: 21 us for the max, 87 us for the whole softmax);
here each row is four loops while it sits in the L1 cache: the maximum, x - max, exp
(exp_compiled.exp_block), the sum and the division.  Same arithmetic as the NumPy bodies
(exponent of x - max, divided by the sum), float32 only (float16 widened by the caller).
"""
from __future__ import annotations

import numpy as np

from ortgpu.providers.cpu.exp_compiled import exp_block
from ortgpu.providers.cpu.jit import compiled_with, helper, split_range

WORK_PER_ELEMENT = 8   # split_range's multiply-add units (~0.6 ns per element)


BLOCK = 2048   # elements per exp call: the rows of a group are shifted, exponentiated, summed
WIDE_ROW = 512   # rows at least this wide take their maxima from NumPy (a recognizer's 6625 classes:
# 40 rows in 453 -> 300 us on one core; the compiled maximum is a scalar loop, NumPy's is vectorised)


@helper()
def _groups(x, y):
    """(row width, rows a group, exp scratch for a group, y flat) of the row bodies below."""
    width = x.shape[1]
    group = max(1, BLOCK // max(width, 1))
    return width, group, np.empty(group * width, np.float32), y.reshape(y.size)


@helper()
def _shifted(xs, ys, m, empty_zero):
    """ys = xs - m; a maximum of -inf (every element -inf) shifts by 0 with empty_zero, so that
    the row's exps are all 0 rather than NaN."""
    if empty_zero and m == np.float32(-np.inf):
        m = np.float32(0.0)
    for i in range(xs.shape[0]):
        ys[i] = xs[i] - m


@helper("contract", "reassoc")
def _normalize_group(y, yf, g0, g1, width, scratch, empty_zero):
    """Rows g0..g1 of y, which hold v - max: exp over the group at once, then each row divided
    by its sum (a sum of 0, every key masked, divides by 1 with empty_zero)."""
    exp_block(yf[g0 * width:g1 * width], scratch)
    for r in range(g0, g1):
        ys = y[r]
        s = np.float32(0.0)
        for i in range(width):
            s += ys[i]
        if empty_zero and s == np.float32(0.0):
            s = np.float32(1.0)
        for i in range(width):
            ys[i] = ys[i] / s


@compiled_with("contract", "reassoc")
def _softmax_rows(lo, hi, x, y, empty_zero):
    """Rows lo..hi of the 2-D float32 x: y[r] = exp(x[r] - max) / sum.  A row of all -inf gives
    zeros with empty_zero (attention: every key masked), NaN otherwise (as x - max is).  Rows go
    in groups of up to BLOCK elements: the maxima and shifts row by row, exp over the group at
    once (a 32-wide row alone pays the exp loops' set-up), then the sums and divisions."""
    width, group, scratch, yf = _groups(x, y)
    for g0 in range(lo, hi, group):
        g1 = min(g0 + group, hi)
        for r in range(g0, g1):
            xs, ys = x[r], y[r]
            m = np.float32(-np.inf)
            for i in range(width):
                v = xs[i]
                m = v if v > m else m    # a NaN is skipped here and reaches the sum through exp
            _shifted(xs, ys, m, empty_zero)
        _normalize_group(y, yf, g0, g1, width, scratch, empty_zero)


@compiled_with("contract", "reassoc")
def _softmax_rows_given_max(lo, hi, x, y, row_max, empty_zero):
    """_softmax_rows with each row's maximum given (NumPy's vectorised max of wide rows: the
    loop above is a scalar one); NaN when the row holds one, so that every x - max is NaN as
    there."""
    width, group, scratch, yf = _groups(x, y)
    for g0 in range(lo, hi, group):
        g1 = min(g0 + group, hi)
        for r in range(g0, g1):
            xs, ys = x[r], y[r]
            m = row_max[r]
            _shifted(xs, ys, m, empty_zero)
        _normalize_group(y, yf, g0, g1, width, scratch, empty_zero)


@compiled_with("contract", "reassoc")
def _softmax_rows_biased(lo, hi, x, y, scale, bias, heads, seq, sb, sn, ss, empty_zero):
    """_softmax_rows of v = x[r] * scale + bias[q] (attention's scaled scores and its bias in the
    same pass).  Row r of the scores (B, heads, seq, T) is (b, n, s), its bias row q = b * sb +
    n * sn + s * ss (a stride 0 where the bias broadcasts that axis), kept by counters: three
    integer divisions a row cost as much as the row's arithmetic."""
    width, group, scratch, yf = _groups(x, y)
    b, n, s = lo // (heads * seq), (lo // seq) % heads, lo % seq
    for g0 in range(lo, hi, group):
        g1 = min(g0 + group, hi)
        for r in range(g0, g1):
            xs, ys, bs = x[r], y[r], bias[b * sb + n * sn + s * ss]
            m = np.float32(-np.inf)
            for i in range(width):
                v = xs[i] * scale + bs[i]
                m = v if v > m else m
            if empty_zero and m == np.float32(-np.inf):
                m = np.float32(0.0)
            for i in range(width):
                ys[i] = (xs[i] * scale + bs[i]) - m
            s += 1
            if s == seq:
                s = 0
                n += 1
                if n == heads:
                    n = 0
                    b += 1
        _normalize_group(y, yf, g0, g1, width, scratch, empty_zero)


def softmax_rows(x: np.ndarray, axis: int, empty_zero: bool = False, scale: float = 1.0, bias=None) -> np.ndarray:
    """Softmax of the float32 x over its axes from `axis` on (one row each), float32, x's shape;
    of x * scale + bias when a bias is given: x 4-D (B, N, S, T) attention scores over its last
    axis, bias 4-D of the full width T, broadcast over any of its first three axes."""
    rows = int(np.prod(x.shape[:axis], dtype=np.int64))
    x2 = np.ascontiguousarray(x).reshape(rows, -1)
    y = np.empty_like(x2)
    work = x2.shape[1] * WORK_PER_ELEMENT
    if bias is not None:
        dims = bias.shape[:3]
        b2 = np.ascontiguousarray(bias, np.float32).reshape(-1, x2.shape[1])
        split_range(_softmax_rows_biased, rows, work, x2, y, np.float32(scale), b2, x.shape[1], x.shape[2],
                    dims[1] * dims[2] if dims[0] > 1 else 0, dims[2] if dims[1] > 1 else 0, 1 if dims[2] > 1 else 0,
                    bool(empty_zero))
    elif scale != 1.0:
        split_range(_softmax_rows_biased, rows, work, x2, y, np.float32(scale), np.zeros((1, x2.shape[1]), np.float32),
                    1, 1, 0, 0, 0, bool(empty_zero))
    elif x2.shape[1] >= WIDE_ROW:
        split_range(_softmax_rows_given_max, rows, work, x2, y, np.max(x2, axis=1), bool(empty_zero))
    else:
        split_range(_softmax_rows, rows, work, x2, y, bool(empty_zero))
    return y.reshape(x.shape)
