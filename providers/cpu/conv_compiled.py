"""Compiled bodies of the convolutions NumPy does badly: depthwise (one input channel per
group), where im2col builds a K-times larger column matrix for G tiny GEMMs; and the passes
around the GEMM of the other convolutions (bias + residual + activation, kn2row's shifted sum).

The inner loop reads the input row through a slice taken per kernel column: a unit-stride
slice lets the compiler vectorise it (0.53 ms for a 5x5 on 240x12x80, 1.5-1.7 ms with an index
computed from the stride), so stride 1 and larger strides are two bodies."""
from __future__ import annotations

import numpy as np

from ortgpu.providers.cpu.jit import compiled, split_range


@compiled
def _depthwise_unit_stride(lo, hi, x, w, y, sh, dh, dw, pt, pl, hp, wp):
    """Output planes lo..hi of y (N, M, OH, OW) from x (N, C, H, W) padded to (hp, wp) with
    pt rows above and pl columns left, and w (M, KH, KW), output channel m reading input
    channel m // (M // C), width stride 1.  Each input plane is padded into a buffer of the
    thread's (a few hundred KiB, in cache) rather than the whole input beforehand."""
    m_all, oh_all, ow_all = y.shape[1], y.shape[2], y.shape[3]
    mult = m_all // x.shape[1]
    kh_all, kw_all = w.shape[1], w.shape[2]
    plane = np.zeros((hp, wp), y.dtype)
    acc = np.empty(ow_all, y.dtype)
    last = -1
    for q in range(lo, hi):
        n = q // m_all
        m = q - n * m_all
        c = m // mult
        if n * x.shape[1] + c != last:  # planes of one input channel share its padded copy
            last = n * x.shape[1] + c
            for h in range(x.shape[2]):  # the border of plane stays zero
                src = x[n, c, h]
                dst = plane[pt + h, pl: pl + x.shape[3]]
                for t in range(x.shape[3]):
                    dst[t] = src[t]
        for oh in range(oh_all):
            for ow in range(ow_all):
                acc[ow] = 0
            for i in range(kh_all):
                row = plane[oh * sh + i * dh]
                for j in range(kw_all):
                    wk = w[m, i, j]
                    seg = row[j * dw: j * dw + ow_all]
                    for ow in range(ow_all):
                        acc[ow] += wk * seg[ow]
            for ow in range(ow_all):
                y[n, m, oh, ow] = acc[ow]


@compiled
def _depthwise_pitched(lo, hi, x, w, y, dh, dw, pt, pl, hp, wp):
    """As _depthwise_unit_stride for strides 1 and 1, over the whole plane at once: the padded
    plane is flat with row pitch wp, so output (oh, ow) sits at oh * wp + ow of one accumulator
    and kernel offset (i, j) reads the plane shifted by i * dh * wp + j * dw: one long
    unit-stride loop per offset instead of one short loop per (row, offset) (ShuffleNet's 3x3 on
    272x14x14: 190 -> 40 us on one core)."""
    m_all, oh_all, ow_all = y.shape[1], y.shape[2], y.shape[3]
    mult = m_all // x.shape[1]
    kh_all, kw_all = w.shape[1], w.shape[2]
    plane = np.zeros(hp * wp, y.dtype)
    span = (oh_all - 1) * wp + ow_all
    acc = np.empty(span, y.dtype)
    last = -1
    for q in range(lo, hi):
        n = q // m_all
        m = q - n * m_all
        c = m // mult
        if n * x.shape[1] + c != last:  # planes of one input channel share its padded copy
            last = n * x.shape[1] + c
            for h in range(x.shape[2]):  # the border of plane stays zero
                src = x[n, c, h]
                dst = plane[(pt + h) * wp + pl: (pt + h) * wp + pl + x.shape[3]]
                for t in range(x.shape[3]):
                    dst[t] = src[t]
        for t in range(span):
            acc[t] = 0
        for i in range(kh_all):
            for j in range(kw_all):
                wk = w[m, i, j]
                off = i * dh * wp + j * dw
                seg = plane[off: off + span]
                for t in range(span):
                    acc[t] += wk * seg[t]
        for oh in range(oh_all):
            row = acc[oh * wp: oh * wp + ow_all]
            for ow in range(ow_all):
                y[n, m, oh, ow] = row[ow]


@compiled
def _depthwise_strided(lo, hi, x, w, y, sh, sw, dh, dw, pt, pl, hp, wp):
    """As _depthwise_pitched for strides sh x sw: the padded plane is split into its sh * sw
    phases (phase (r, s) holds rows r, r + sh, ... and columns s, s + sw, ...), each flat with
    row pitch wq, so that output (oh, ow) sits at oh * wq + ow of one accumulator and kernel
    offset (i, j) reads phase (i * dh % sh, j * dw % sw) shifted by (i * dh // sh) * wq +
    j * dw // sw: one long unit-stride loop per offset (ShuffleNet's 3x3 stride 2 on 136x28x28:
    190 -> 123 us on one core; row by row over column phases before).  The phases' padding is
    zero from their allocation and never written."""
    m_all, oh_all, ow_all = y.shape[1], y.shape[2], y.shape[3]
    mult = m_all // x.shape[1]
    kh_all, kw_all = w.shape[1], w.shape[2]
    wx = x.shape[3]
    wq = max((wp + sw - 1) // sw, ow_all + (kw_all - 1) * dw // sw + 1)
    hq = max((hp + sh - 1) // sh, oh_all + (kh_all - 1) * dh // sh + 1)
    phases = np.zeros((sh * sw, hq * wq), y.dtype)
    span = (oh_all - 1) * wq + ow_all
    acc = np.empty(span, y.dtype)
    last = -1
    for q in range(lo, hi):
        n = q // m_all
        m = q - n * m_all
        c = m // mult
        if n * x.shape[1] + c != last:  # planes of one input channel share its phases
            last = n * x.shape[1] + c
            for h in range(x.shape[2]):
                src = x[n, c, h]
                prow = (pt + h) // sh
                for r in range(sw):  # this row's columns of column phase r: a stepped read
                    t0 = (r - pl) % sw
                    count = (wx - t0 + sw - 1) // sw if wx > t0 else 0
                    base = prow * wq + (pl + t0) // sw
                    dst = phases[((pt + h) % sh) * sw + r, base: base + count]
                    run = src[t0:]
                    for k in range(count):
                        dst[k] = run[k * sw]
        for t in range(span):
            acc[t] = 0
        for i in range(kh_all):
            for j in range(kw_all):
                wk = w[m, i, j]
                a, b = i * dh, j * dw
                off = (a // sh) * wq + b // sw
                seg = phases[(a % sh) * sw + b % sw, off: off + span]
                for t in range(span):
                    acc[t] += wk * seg[t]
        for oh in range(oh_all):
            row = acc[oh * wq: oh * wq + ow_all]
            for ow in range(ow_all):
                y[n, m, oh, ow] = row[ow]


def depthwise_conv2d(x: np.ndarray, w: np.ndarray, strides, dilations, begins, ends, out_shape) -> np.ndarray:
    """2-D convolution with one input channel per group of a float x (N, C, H, W) padded by
    the non-negative begins/ends (each plane is padded as the body reaches it)."""
    n, _, h, wd = x.shape
    m, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    y = np.empty((n, m) + tuple(out_shape), dtype=x.dtype)
    x = np.ascontiguousarray(x)
    k = np.ascontiguousarray(w.reshape(m, kh, kw), dtype=x.dtype)
    work = out_shape[0] * out_shape[1] * kh * kw
    hp, wp = h + begins[0] + ends[0], wd + begins[1] + ends[1]
    pads = (begins[0], begins[1], hp, wp)
    if strides[0] == 1 and strides[1] == 1:
        # its multiply-adds are a quarter of split_range's unit of work: vectorised over whole
        # planes, handing a chunk to another thread cost more than 272x14x14 3x3's 65 us on
        # one core (104 us on two)
        split_range(_depthwise_pitched, n * m, work / 4, x, k, y, dilations[0], dilations[1], *pads)
    elif strides[1] == 1:
        split_range(_depthwise_unit_stride, n * m, work, x, k, y, strides[0], dilations[0], dilations[1], *pads)
    else:  # vectorised over whole phase planes, as the stride-1 body
        split_range(_depthwise_strided, n * m, work / 4, x, k, y, strides[0], strides[1], dilations[0], dilations[1],
                    *pads)
    return y


# ----------------------------------------------------------------------------- GEMM epilogue
# The bias, a residual and an activation of a convolution applied in one pass over the GEMM's
# output, row by row (a row of P outputs stays in the first-level cache between the steps),
# instead of one NumPy pass (and one temporary) per step.

# activation name -> its code in _bias_activation; Sigmoid and Tanh run as NumPy's in-place
# ufuncs after the compiled pass (their exp/tanh are SIMD there, a scalar libm call per element
# in the compiled loop: on 32x240x320, Sigmoid 18.5 ms compiled, 2.5 ms in place, 27 ms as the
# Sigmoid kernel's NumPy body; Tanh 51.7 ms compiled, 0.66 ms in place)
EPILOGUES = {"": 0, "Relu": 1, "LeakyRelu": 2, "Clip": 3, "Sigmoid": 0, "HardSigmoid": 5, "HardSwish": 6,
             "Tanh": 0}


def _sigmoid_in_place(y):
    with np.errstate(over="ignore"):  # exp(-y) overflows to inf for y < -88: 1 / inf = 0
        np.negative(y, out=y)
        np.exp(y, out=y)
        y += 1
        np.reciprocal(y, out=y)


AFTER = {"Sigmoid": _sigmoid_in_place, "Tanh": lambda y: np.tanh(y, out=y)}


@compiled
def _bias_activation(lo, hi, y, bias, z, has_z, act, k):
    """Rows lo..hi of y (N*M, P) in place: y + bias[row % M] (+ z), then activation `act`
    (an EPILOGUES code; 0 none) with parameters k[0], k[1]; k (of y's dtype, so that the math
    stays in it) also holds the constants 0, 1, 1/6 and 1/2.  Each activation is its own
    unit-stride loop."""
    m_all, p_all = bias.shape[0], y.shape[1]
    p0, p1, zero, one, sixth, half = k[0], k[1], k[2], k[3], k[4], k[5]
    for q in range(lo, hi):
        row = y[q]
        b = bias[q % m_all]
        if has_z:
            zr = z[q]
            for i in range(p_all):
                row[i] = (row[i] + b) + zr[i]
        else:
            for i in range(p_all):
                row[i] += b
        if act == 1:
            for i in range(p_all):
                row[i] = max(row[i], zero)
        elif act == 2:
            for i in range(p_all):
                v = row[i]
                row[i] = v * p0 if v < zero else v
        elif act == 3:
            for i in range(p_all):
                row[i] = min(max(row[i], p0), p1)
        elif act == 5:
            for i in range(p_all):
                row[i] = min(max(row[i] * p0 + p1, zero), one)
        elif act == 6:
            for i in range(p_all):
                v = row[i]
                row[i] = v * min(max(v * sixth + half, zero), one)


# outputs up to this many elements take the bias and a Relu/Sigmoid/Tanh by NumPy in place
# (silero VAD's 1-D convolutions: 128x3 outputs; the compiled pass's call set-up was ~5 us of
# their ~35)
SMALL_EPILOGUE = 4096


def bias_activation(y: np.ndarray, bias, z, activation: str, params) -> np.ndarray:
    """act(y + bias (+ z)) computed in place on the fresh, C-contiguous conv output y (N, M, *S);
    bias (M,) or None, z an array of y's shape or None, activation an EPILOGUES name."""
    n, m = y.shape[:2]
    if y.size <= SMALL_EPILOGUE and z is None and (activation in ("", "Relu") or activation in AFTER):
        # a small output: NumPy's in-place calls cost less than the compiled call's set-up
        if bias is not None:
            y += np.asarray(bias, dtype=y.dtype).reshape((1, m) + (1,) * (y.ndim - 2))
        if activation == "Relu":
            np.maximum(y, 0, out=y)
        elif activation in AFTER:
            AFTER[activation](y)
        return y
    rows = y.reshape(n * m, -1)
    b = np.zeros(m, y.dtype) if bias is None else np.ascontiguousarray(bias, dtype=y.dtype).reshape(m)
    zz = rows[:1, :1] if z is None else np.ascontiguousarray(z, dtype=y.dtype).reshape(rows.shape)
    k = np.array((list(params) + [0.0, 0.0])[:2] + [0.0, 1.0, 1 / 6, 0.5], y.dtype)
    # one unit per element: a memory-bound pass, which a second thread sped up only on large
    # outputs (64x111x111: 101 us on one thread, 104-143 us on two)
    split_range(_bias_activation, n * m, rows.shape[1], rows, b, zz, z is not None, EPILOGUES[activation], k)
    if activation in AFTER:
        AFTER[activation](y)
    return y


# ----------------------------------------------------------------------------- kn2row
@compiled
def _shifted_sum(lo, hi, z, y, dh, dw):
    """Planes lo..hi of y (N*M, OH, OW): the sum over kernel offsets (i, j) of the GEMM output
    z (N*M, KH, KW, HP, WP) shifted by (i*dh, j*dw); one pass instead of one per offset."""
    oh_all, ow_all = y.shape[1], y.shape[2]
    kh_all, kw_all = z.shape[1], z.shape[2]
    for q in range(lo, hi):
        for oh in range(oh_all):
            acc = y[q, oh]
            first = z[q, 0, 0, oh]
            for t in range(ow_all):
                acc[t] = first[t]
            for i in range(kh_all):
                for j in range(kw_all):
                    if i == 0 and j == 0:
                        continue
                    seg = z[q, i, j, oh + i * dh, j * dw: j * dw + ow_all]
                    for t in range(ow_all):
                        acc[t] += seg[t]


def shifted_sum(z: np.ndarray, kernel, dilations, out_shape) -> np.ndarray:
    """y (N, M, OH, OW) = sum over the kernel offsets of z (N, M, KH*KW, HP, WP) shifted by them."""
    n, m = z.shape[:2]
    kh, kw = kernel
    zz = np.ascontiguousarray(z).reshape((n * m, kh, kw) + tuple(z.shape[3:]))
    y = np.empty((n * m,) + tuple(out_shape), z.dtype)
    split_range(_shifted_sum, n * m, out_shape[0] * out_shape[1] * kh * kw, zz, y, dilations[0], dilations[1])
    return y.reshape((n, m) + tuple(out_shape))


# ----------------------------------------------------------------------------- ConvTranspose tiles
@compiled
def _tiles(lo, hi, cols, y, bias):
    """Planes lo..hi of y (N*M, H*KH, W*KW) from the ConvTranspose GEMM's cols (N*M, KH, KW, H, W)
    where each input pixel's KH x KW window is its own tile of the output (strides equal to the
    kernel, no dilation), plus bias[plane % M]: output rows written in order."""
    kh_all, kw_all, h_all, w_all = cols.shape[1], cols.shape[2], cols.shape[3], cols.shape[4]
    m_all = bias.shape[0]
    for q in range(lo, hi):
        b = bias[q % m_all]
        for h in range(h_all):
            for i in range(kh_all):
                row = y[q, h * kh_all + i]
                if kw_all == 2:   # the usual 2x2 upsampling: two source rows, one contiguous write
                    s0, s1 = cols[q, i, 0, h], cols[q, i, 1, h]
                    for w in range(w_all):
                        row[2 * w] = s0[w] + b
                        row[2 * w + 1] = s1[w] + b
                else:
                    for j in range(kw_all):
                        src = cols[q, i, j, h]
                        for w in range(w_all):
                            row[w * kw_all + j] = src[w] + b


def tiles_2d(cols: np.ndarray, bias) -> np.ndarray:
    """(N, M, H*KH, W*KW) from cols (N, M, KH, KW, H, W) (float32/float64): ConvTranspose's
    col2im when its windows tile the output, with the bias (M,) or none added on the way."""
    n, m, kh, kw, h, w = cols.shape
    cc = np.ascontiguousarray(cols).reshape(n * m, kh, kw, h, w)
    y = np.empty((n * m, h * kh, w * kw), cols.dtype)
    b = np.zeros(m, cols.dtype) if bias is None else np.ascontiguousarray(bias, dtype=cols.dtype).reshape(m)
    split_range(_tiles, n * m, h * kh * w * kw / 4, cc, y, b)
    return y.reshape(n, m, h * kh, w * kw)


# ----------------------------------------------------------------------------- im2col
@compiled
def _im2col(lo, hi, x, cols, kw_all, sh, sw, dh, dw, pt, pl):
    """Rows lo..hi of cols (N * C*KH*KW, OH, OW): row (n, c, i, j) holds x[n, c] (N, C, H, W)
    read at (oh * sh - pt + i * dh, ow * sw - pl + j * dw), zero where that falls in the
    padding.  Each output row is the zeros on its left, one (strided) copy from the input row,
    the zeros on its right; the padded input is never built.  Flat unsigned indices: numba
    checks a signed index for wrapping around, which keeps the copy from being vectorised
    (16x55x55, 3x3: 230 us signed, 60 us unsigned, NumPy's window-view copy 96 us)."""
    c_all, h_all, w_all = x.shape[1], x.shape[2], x.shape[3]
    oh_all, ow_all = cols.shape[1], cols.shape[2]
    k = cols.shape[0] // (x.shape[0] * c_all)   # KH*KW
    xf = x.reshape(x.size)
    cf = cols.reshape(cols.size)
    owu, swu = np.uint64(ow_all), np.uint64(sw)
    zero = cols.dtype.type(0)
    for q in range(lo, hi):
        n, r = q // (c_all * k), q % (c_all * k)
        c, i, j = r // k, (r % k) // kw_all, r % kw_all
        off = j * dw - pl   # input column of output column 0
        first = min(ow_all, (sw - 1 - off) // sw) if off < 0 else 0   # the first column inside
        last = max(first, min(ow_all, (w_all - 1 - off) // sw + 1)) if w_all - 1 - off >= 0 else first
        fu, lu = np.uint64(first), np.uint64(last)
        base = (n * c_all + c) * h_all * w_all
        for oh in range(oh_all):
            d0 = np.uint64((q * oh_all + oh) * ow_all)
            ih = oh * sh - pt + i * dh
            if ih < 0 or ih >= h_all:
                for t in range(owu):
                    cf[d0 + t] = zero
                continue
            s0 = np.uint64(base + ih * w_all + off + first * sw)
            for t in range(fu):
                cf[d0 + t] = zero
            for t in range(lu - fu):
                cf[d0 + fu + t] = xf[s0 + t * swu]
            for t in range(lu, owu):
                cf[d0 + t] = zero


def im2col_2d(x: np.ndarray, kernel, strides, dilations, begins, out_shape) -> np.ndarray:
    """The column matrix (N, C*KH*KW, OH*OW) of a 2-D convolution of x (N, C, H, W): row
    (c, i, j) holds the input under kernel offset (i, j) at every output position, zero in the
    padding (begins: the top and left pads, which may be negative; the bottom and right ones
    follow from out_shape)."""
    n, c = x.shape[:2]
    kh, kw = kernel
    oh, ow = out_shape
    cols = np.empty((n * c * kh * kw, oh, ow), x.dtype)
    split_range(_im2col, cols.shape[0], oh * ow / 4, np.ascontiguousarray(x), cols, kw, strides[0], strides[1],
                dilations[0], dilations[1], begins[0], begins[1])
    return cols.reshape(n, c * kh * kw, oh * ow)
