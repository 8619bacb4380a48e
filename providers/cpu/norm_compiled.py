"""Layer normalizations as compiled row kernels: LayerNormalization (and its RMS form),
SkipLayerNormalization (input + skip + bias, optionally writing that sum) and
EmbedLayerNormalization (three gathered embedding rows summed), one row at a time while the
row is in the L1 cache.

NumPy needs a dozen array passes and reductions over a short last axis (each reduction call
costs microseconds of set-up on a (128, 32) block); here each row is three loops: the sum
(written straight into the output row), the centred sum of squares, the scaling.  Statistics
are two-pass in float32, as the NumPy bodies compute them; the sums are allowed to run in vector
lanes ("reassoc": a float reduction is not vectorised otherwise), which changes their rounding,
not their accuracy.  float32 only: float16 is widened by the caller (half_compiled) and the
outputs rounded once; float64 keeps the NumPy bodies.
"""
from __future__ import annotations

import numpy as np

from ortgpu.providers.cpu.half_compiled import narrow_block, takes, widen, widen_block
from ortgpu.providers.cpu.jit import compiled_with, helper, split_range

WORK_PER_ELEMENT = 4   # split_range's multiply-add units (~0.3 ns per element)
BLOCK = 2048           # elements per group of float16 rows widened at once


@helper("contract", "reassoc")
def normalize_row(src, dst, gamma, beta, eps, simplified, mean_out, inv_out, r):
    """dst = (src - mean) / sqrt(var + eps) * gamma + beta for one float32 row (mean 0 when
    simplified: RMS normalization); mean_out[r] and inv_out[r] get the row's statistics.  dst may
    be src (normalized in place)."""
    n = src.shape[0]
    s = np.float32(0.0)
    for i in range(n):
        s += src[i]
    mean = np.float32(0.0) if simplified else s / np.float32(n)
    q = np.float32(0.0)
    for i in range(n):
        d = src[i] - mean
        q += d * d
    inv = np.float32(1.0) / np.sqrt(q / np.float32(n) + eps)
    for i in range(n):
        dst[i] = (src[i] - mean) * inv * gamma[i] + beta[i]
    mean_out[r] = mean
    inv_out[r] = inv


@compiled_with("contract", "reassoc")
def _layer_norm_rows(lo, hi, x, gamma, beta, eps, simplified, y, mean_out, inv_out):
    """Rows lo..hi of the 2-D float32 x normalized into y; per-row mean and inverse deviation."""
    for r in range(lo, hi):
        normalize_row(x[r], y[r], gamma, beta, eps, simplified, mean_out, inv_out, r)


@compiled_with("contract", "reassoc")
def _skip_layer_norm_rows(lo, hi, x, skip, bias, gamma, beta, eps, simplified, y, mean_out, inv_out, total):
    """Rows lo..hi of (x + skip) + bias normalized into y; skip's rows repeat over a batch (row r
    takes skip row r % len(skip)).  The sum is written to `total` (the sum output, or y itself
    when the sum is not wanted: then normalized in place), one body for both."""
    skip_rows = skip.shape[0]
    for r in range(lo, hi):
        xs, ss, ts = x[r], skip[r % skip_rows], total[r]
        for i in range(xs.shape[0]):
            ts[i] = (xs[i] + ss[i]) + bias[i]
        normalize_row(ts, y[r], gamma, beta, eps, simplified, mean_out, inv_out, r)


@compiled_with("contract", "reassoc")
def _skip_layer_norm_half_rows(lo, hi, x, skip, bias, gamma, beta, eps, simplified, y, mean_out, inv_out, total):
    """_skip_layer_norm_rows on float16 rows (x, skip, y and total hold half bit patterns, uint16):
    groups of rows widened into float32 scratch, computed as there, y (and the sum, when total
    has rows) rounded back once.  Converting inside the body saves the four to six conversion
    calls around it (a few us each on a transformer's (128, 32) block, the whole of the work)."""
    width = x.shape[1]
    skip_rows = skip.shape[0]
    keep_sum = total.shape[0] > 0
    group = max(1, BLOCK // max(width, 1))
    xa = np.empty(group * width, np.float32)
    sa = np.empty(group * width, np.float32)
    ta = np.empty(group * width, np.float32)
    ya = np.empty(group * width, np.float32)
    scratch = np.empty(group * width, np.float32)
    xf, yf, tf = x.reshape(x.size), y.reshape(y.size), total.reshape(total.size)
    sf = skip.reshape(skip.size)
    for g0 in range(lo, hi, group):
        g1 = min(g0 + group, hi)
        n = (g1 - g0) * width
        widen_block(xf[g0 * width:g1 * width], xa[:n])
        if skip_rows == x.shape[0]:
            widen_block(sf[g0 * width:g1 * width], sa[:n])
        else:
            for r in range(g0, g1):
                k = (r - g0) * width
                widen_block(skip[r % skip_rows], sa[k:k + width])
        for r in range(g0, g1):
            k = (r - g0) * width
            xs, ss, ts = xa[k:k + width], sa[k:k + width], ta[k:k + width]
            for i in range(width):
                ts[i] = (xs[i] + ss[i]) + bias[i]
            normalize_row(ts, ya[k:k + width], gamma, beta, eps, simplified, mean_out, inv_out, r)
        if keep_sum:
            narrow_block(ta[:n], tf[g0 * width:g1 * width], scratch)
        narrow_block(ya[:n], yf[g0 * width:g1 * width], scratch)


@compiled_with("contract", "reassoc")
def _embed_layer_norm_rows(lo, hi, ids, segment_ids, position_ids, seq, word, position, segment, gamma, beta,
                           eps, y, total, stats, bad):
    """Token rows lo..hi: word[ids[r]] + position[position_ids[r], or r % seq when position_ids is
    empty] + segment[segment_ids[r], or 0 when segment_ids is empty] into `total` (the sum output,
    or y itself), normalized into y; `stats` (2, rows) takes the mean and inverse deviation.
    Every index is checked first: one outside its table's range is reported in bad (which: 0 ids,
    1 positions, 2 segments; the index) and nothing is computed.  Without segments the caller
    passes a table of one zero row, so that the sum is one loop: a branch between two loops here
    made the body 2.5x slower (14.5 vs 6.5 us on 128 rows of 32)."""
    use_segment = segment_ids.shape[0] > 0
    use_position = position_ids.shape[0] > 0
    for r in range(lo, hi):
        w = ids[r]
        p = position_ids[r] if use_position else r % seq
        g = segment_ids[r] if use_segment else 0
        if w < 0 or w >= word.shape[0]:
            bad[0], bad[1] = 0, w
            return
        if p < 0 or p >= position.shape[0]:
            bad[0], bad[1] = 1, p
            return
        if g < 0 or g >= segment.shape[0]:
            bad[0], bad[1] = 2, g
            return
    mean_out, inv_out = stats[0], stats[1]
    for r in range(lo, hi):
        p = position_ids[r] if use_position else r % seq
        g = segment_ids[r] if use_segment else 0
        ws, ps, gs, ts = word[ids[r]], position[p], segment[g], total[r]
        for i in range(ts.shape[0]):
            ts[i] = (ws[i] + ps[i]) + gs[i]
        normalize_row(ts, y[r], gamma, beta, eps, False, mean_out, inv_out, r)


def _vector(p, width):
    """An optional per-column parameter (float32 or float16) as a contiguous float32 vector (zeros
    when absent)."""
    if p is None:
        return np.zeros(width, np.float32)
    if type(p) is np.ndarray and p.dtype == np.float32 and p.shape == (width,) and p.flags.c_contiguous:
        return p   # (most are: a model's float32 gamma and beta)
    return np.ascontiguousarray(p, np.float32).reshape(width)


def layer_norm(x2d, gamma, beta, epsilon, simplified=False):
    """(y, mean, inv_std) of the rows of the 2-D float32 x2d (mean and inv_std: one per row)."""
    x = np.ascontiguousarray(x2d)
    rows, width = x.shape
    y = np.empty_like(x)
    mean = np.empty(rows, np.float32)
    inv = np.empty(rows, np.float32)
    split_range(_layer_norm_rows, rows, width * WORK_PER_ELEMENT, x, _vector(gamma, width), _vector(beta, width),
                np.float32(epsilon), bool(simplified), y, mean, inv)
    return y, mean, inv


def skip_layer_norm(x2d, skip2d, bias, gamma, beta, epsilon, simplified=False, want_sum=False):
    """(y, mean, inv_std, sum or None) of the rows of (x2d + skip2d) + bias, float32; skip2d's rows
    repeat when it has fewer (a skip broadcast over the batch)."""
    x = np.ascontiguousarray(x2d)
    rows, width = x.shape
    y = np.empty_like(x)
    mean = np.empty(rows, np.float32)
    inv = np.empty(rows, np.float32)
    total = np.empty_like(x) if want_sum else y
    split_range(_skip_layer_norm_rows, rows, width * WORK_PER_ELEMENT, x, np.ascontiguousarray(skip2d),
                _vector(bias, width), _vector(gamma, width), _vector(beta, width), np.float32(epsilon),
                bool(simplified), y, mean, inv, total)
    return y, mean, inv, (total if want_sum else None)


def skip_layer_norm_half(x2d, skip2d, bias, gamma, beta, epsilon, simplified=False, want_sum=False):
    """skip_layer_norm on float16 x2d and skip2d, rows converted inside the body: (y float16, mean,
    inv_std float32, sum float16 or None)."""
    x = np.ascontiguousarray(x2d).view(np.uint16)
    rows, width = x.shape
    y = np.empty_like(x)
    mean = np.empty(rows, np.float32)
    inv = np.empty(rows, np.float32)
    total = np.empty((rows if want_sum else 0, width), np.uint16)
    split_range(_skip_layer_norm_half_rows, rows, width * WORK_PER_ELEMENT * 2, x,
                np.ascontiguousarray(skip2d).view(np.uint16), _vector(bias, width),
                _vector(gamma, width), _vector(beta, width), np.float32(epsilon), bool(simplified),
                y, mean, inv, total)
    return y.view(np.float16), mean, inv, (total.view(np.float16) if want_sum else None)


def _indices(a, rows):
    """A flat index array for the embedding body: int32 as it comes (the optimizer's models cast
    their ids to int32), anything else as int64."""
    return np.ascontiguousarray(a, a.dtype if a.dtype == np.int32 else np.int64).reshape(rows)


def embed_layer_norm(op, input_ids, segment_ids, position_ids, word, position, segment, gamma, beta, epsilon,
                     want_sum=False):
    """(y, sum or None), both (B, S, H) float32, of EmbedLayerNormalization; position_ids None means
    0..S-1 (checked against the table here), else broadcast to (B, S).  ValueError naming the
    input that holds an index outside its table."""
    b, s = input_ids.shape
    rows = b * s
    width = word.shape[1]
    no_index = np.empty(0, np.int64)
    use_segment = segment is not None and segment_ids is not None
    pos = no_index if position_ids is None else _indices(np.broadcast_to(position_ids, (b, s)), rows)
    seg_ids = _indices(segment_ids, rows) if use_segment else no_index
    seg = np.ascontiguousarray(segment, np.float32) if use_segment else np.zeros((1, width), np.float32)
    y = np.empty((rows, width), np.float32)
    total = np.empty_like(y) if want_sum else y
    bad = np.full(2, -1, np.int64)
    split_range(_embed_layer_norm_rows, rows, width * WORK_PER_ELEMENT, _indices(input_ids, rows), seg_ids, pos, s,
                np.ascontiguousarray(word, np.float32), np.ascontiguousarray(position, np.float32), seg,
                _vector(gamma, width), _vector(beta, width), np.float32(epsilon), y, total,
                np.empty((2, rows), np.float32), bad)
    if bad[0] >= 0:
        name, table = (("input_ids", word), ("position_ids", position), ("segment_ids", segment))[int(bad[0])]
        raise ValueError(f"{op}: input '{name}' holds indices outside [0, {table.shape[0]}), e.g. {int(bad[1])}")
    y = y.reshape(b, s, width)
    return y, (total.reshape(b, s, width) if want_sum else None)


def compiled_rows(xp, X, axis, scale, bias) -> bool:
    """Whether a layer normalization over X's axes from `axis` on runs as compiled rows: float32
    or float16 NumPy arrays, and scale / bias of exactly the normalized size (not broadcast)."""
    if not takes(xp, X, scale, bias) or X.size == 0:
        return False
    width = X.size // int(np.prod(X.shape[:axis], dtype=np.int64))
    return scale.size == width and (bias is None or bias.size == width)


def norm_rows(X, axis, scale, bias, epsilon, simplified=False):
    """(y, mean, inv_std) float32 of a layer normalization over X's axes from `axis` on, by the
    compiled row kernel; mean and inv_std keep the normalized axes as size 1."""
    lead = X.shape[:axis]
    x = widen(X).reshape(int(np.prod(lead, dtype=np.int64)), -1)
    y, mean, inv = layer_norm(x, widen(scale), widen(bias), epsilon, simplified)
    stat_shape = lead + (1,) * (X.ndim - axis)
    return y.reshape(X.shape), mean.reshape(stat_shape), inv.reshape(stat_shape)
