"""Convolutions: Conv, ConvTranspose, ConvInteger, DeformConv and Col2Im.

Conv is im2col (a strided window view copied into a column matrix) plus one batched
matmul over the groups; ConvTranspose is the reverse: one matmul, then a col2im
scatter-add that loops over kernel offsets only.  The window and padding helpers here
are shared with the pooling and quantized kernels.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from ortgpu.providers.cpu import jit
from ortgpu.providers.cpu.conv_compiled import (EPILOGUES, bias_activation, depthwise_conv2d, im2col_2d, shifted_sum,
                                                tiles_2d)
from ortgpu.providers.dtype_sets import COMPLEX, FLOATS, NUMERIC
from ortgpu.providers.registry import kernel


# ----------------------------------------------------------------------------- helpers

def compute_dtype(dtype):
    """The dtype to do float math in: float64 stays, everything else computes in float32."""
    return np.float64 if np.dtype(dtype) == np.float64 else np.float32


def fill_spatial(values, n, default):
    """An attribute list for n spatial axes, or n copies of the default when it is absent."""
    return [int(v) for v in values] if values else [default] * n


def same_pads(in_shape, kernel, strides, dilations, auto_pad):
    """Begin/end pads for auto_pad SAME_UPPER / SAME_LOWER (output = ceil(in / stride))."""
    begins, ends = [], []
    for size, k, s, d in zip(in_shape, kernel, strides, dilations):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small = total // 2
        if auto_pad == "SAME_UPPER":
            begins.append(small)
            ends.append(total - small)
        else:
            begins.append(total - small)
            ends.append(small)
    return begins, ends


def resolve_pads(in_shape, kernel, strides, dilations, auto_pad, pads):
    """(begin pads, end pads) from the auto_pad / pads attributes."""
    n = len(in_shape)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return same_pads(in_shape, kernel, strides, dilations, auto_pad)
    if auto_pad == "VALID" or not pads:
        return [0] * n, [0] * n
    if auto_pad not in ("NOTSET", ""):
        raise ValueError(f"unknown auto_pad '{auto_pad}'")
    return [int(p) for p in pads[:n]], [int(p) for p in pads[n:2 * n]]


def pad_spatial(xp, x, begins, ends, value=0):
    """x (N, C, *S) padded on the spatial axes; negative pads crop."""
    if any(b < 0 or e < 0 for b, e in zip(begins, ends)):
        sl = [slice(None), slice(None)] + [slice(max(0, -b), x.shape[2 + i] - max(0, -e) or None)
                                           for i, (b, e) in enumerate(zip(begins, ends))]
        x = x[tuple(sl)]
        begins = [max(0, b) for b in begins]
        ends = [max(0, e) for e in ends]
    if not any(begins) and not any(ends):
        return x
    # a filled array and one slice assignment: np.pad costs ~75 us of Python on a small map
    # (7 us this way) and 1.4x the time on a 32x112x112 one (measured 2026-12-06)
    shape = tuple(x.shape[:2]) + tuple(s + b + e for s, b, e in zip(x.shape[2:], begins, ends))
    out = xp.zeros(shape, dtype=x.dtype) if value == 0 else xp.full(shape, value, dtype=x.dtype)
    out[(slice(None), slice(None)) + tuple(slice(b, b + s) for b, s in zip(begins, x.shape[2:]))] = x
    return out


def window_view(xp, x, kernel, strides, dilations, out_shape):
    """A strided view of x (N, C, *S) with shape (N, C, *out_shape, *kernel); no copy."""
    st = x.strides
    nd = len(kernel)
    shape = tuple(x.shape[:2]) + tuple(out_shape) + tuple(kernel)
    view_strides = (tuple(st[:2]) + tuple(st[2 + i] * strides[i] for i in range(nd))
                    + tuple(st[2 + i] * dilations[i] for i in range(nd)))
    return xp.lib.stride_tricks.as_strided(x, shape=shape, strides=view_strides)


def conv_out_shape(in_shape, kernel, strides, dilations, begins, ends):
    return [(size + b + e - ((k - 1) * d + 1)) // s + 1
            for size, k, s, d, b, e in zip(in_shape, kernel, strides, dilations, begins, ends)]


class ConvForm:
    """What one Conv node does with inputs of one shape, worked out once: the geometry from its
    attributes, which way it computes (`path`), and the weight and bias laid out for that way
    in the compute dtype.  Kept on the node's context while the weight and bias are the same
    constant arrays and the input's shape and dtype stay (KernelContext.prepared), so a run
    pays only for the arithmetic (silero VAD's small 1-D convolutions: 22 -> 17 us a node, the
    model 300 -> 260 us a run; a kn2row weight is no longer re-laid out on every run)."""

    __slots__ = ("kernel", "strides", "dilations", "begins", "ends", "out_shape", "y_shape", "cdt",
                 "path", "weight", "bias", "index", "tail")

    def __init__(self, xp, x_shape, x_dtype, W, B, auto_pad, dilations, group, kernel_shape, pads, strides):
        nd = len(x_shape) - 2
        n, c = x_shape[:2]
        m = W.shape[0]
        self.kernel = kernel = fill_spatial(kernel_shape, nd, 0) if kernel_shape else list(W.shape[2:])
        self.strides = fill_spatial(strides, nd, 1)
        self.dilations = fill_spatial(dilations, nd, 1)
        self.begins, self.ends = resolve_pads(x_shape[2:], kernel, self.strides, self.dilations, auto_pad, pads)
        self.out_shape = conv_out_shape(x_shape[2:], kernel, self.strides, self.dilations, self.begins, self.ends)
        self.y_shape = (n, m) + tuple(self.out_shape)
        self.cdt = cdt = compute_dtype(x_dtype)
        self.path = path = _conv_path(xp, x_shape, W.shape, group, kernel, self.strides, self.begins, self.ends,
                                      self.out_shape)
        w = W.astype(cdt, copy=False)
        cg, mg, k = c // group, m // group, math.prod(kernel)
        self.index = None
        if path == "1x1":
            self.weight = w.reshape(m, c)
        elif path in ("grouped 1x1", "im2col") and group > 1:
            self.weight = w.reshape(group, mg, cg * k)
        elif path == "kn2row":  # (filter, kernel offset) rows against the input channels
            self.weight = xp.ascontiguousarray(xp.moveaxis(w.reshape(m, c, k), 2, 1).reshape(m * k, c))
        elif path == "depthwise":
            self.weight = w
        else:  # "small", "im2col": one (M, C*K) matrix
            self.weight = w.reshape(m, c * k)
        self.bias = None if B is None else xp.ascontiguousarray(B, dtype=cdt).reshape(m)
        self.tail = None
        if path == "small":
            self._small_columns(x_shape, n)

    def _small_columns(self, x_shape, n):
        """The "small" path's gather: the cached index over x's flat elements followed by a zero
        (windows in the padding) and a one, which the bias, appended to the weight as a last
        column, multiplies (so the GEMM adds it: one NumPy call less a node)."""
        self.index = _columns_index(tuple(x_shape[1:]), tuple(self.kernel), tuple(self.strides),
                                    tuple(self.dilations), tuple(self.begins), tuple(self.ends))
        self.tail = np.zeros((n, 2), self.cdt)
        self.tail[:, 1] = 1
        if self.bias is not None:
            one = np.full((1, self.index.shape[1]), math.prod(x_shape[1:]) + 1, self.index.dtype)
            self.index = np.concatenate((self.index, one))
            self.weight = np.concatenate((self.weight, self.bias[:, None]), axis=1)
            self.bias = None


def _conv_path(xp, x_shape, w_shape, group, kernel, strides, begins, ends, out_shape) -> str:
    """How a convolution of these shapes computes: "1x1" / "grouped 1x1" (the input is the
    column matrix), "depthwise" (a compiled body), "small" (columns gathered by one cached
    index), "kn2row" or "im2col"."""
    n, c = x_shape[:2]
    m = w_shape[0]
    cg = c // group
    p = math.prod(out_shape)
    if all(k == 1 for k in kernel) and not any(begins) and not any(ends):
        return "1x1" if group == 1 else "grouped 1x1"
    host = xp is np
    if cg == 1 and len(kernel) == 2 and host and jit.enabled():
        return "depthwise"
    if (group == 1 and host and n * c * math.prod(kernel) * p <= SMALL_CONV_COLUMNS and min(begins) >= 0
            and min(ends) >= 0):
        return "small"
    # kn2row's GEMM (M*K, C) x (C, padded P) runs faster than im2col's copy + (M, C*K) x (C*K, P)
    # when M < C, and with M == C on a large map (64 channels, 3x3, 56x56: 2.0 vs 2.4 ms; 128
    # channels on 28x28: 1.9 vs 1.7 ms, so not there; one core, 2026-12-06)
    if group == 1 and (m < c or (m == c and p >= 2048)) and all(s == 1 for s in strides):
        return "kn2row"
    return "im2col"


def conv_with_form(xp, x, form: ConvForm, group: int):
    """Convolution of x (N, C, *S, in the form's compute dtype) by the form's weight; no bias."""
    path, w = form.path, form.weight
    if path == "small":
        return _conv_small(x, w, form.index, form.tail, form.y_shape)
    if path == "1x1" or path == "grouped 1x1":
        n, c = x.shape[:2]
        if any(s != 1 for s in form.strides):
            x = x[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in form.strides)]
        p = math.prod(form.out_shape)
        if group == 1:
            y = xp.matmul(w, x.reshape(n, c, p))  # 1x1 kernel: the input itself is the column matrix
        else:  # grouped 1x1 (ShuffleNet): one batched GEMM over the groups, no window view
            y = xp.matmul(w, x.reshape(n, group, c // group, p))
        return y.reshape(form.y_shape)
    begins, ends = form.begins, form.ends
    if path == "depthwise":
        if min(begins) < 0 or min(ends) < 0:  # crop first; the body pads by non-negative amounts
            return depthwise_conv2d(pad_spatial(xp, x, begins, ends), w, form.strides, form.dilations, [0, 0],
                                    [0, 0], form.out_shape)
        return depthwise_conv2d(x, w, form.strides, form.dilations, begins, ends, form.out_shape)
    if path == "kn2row":
        return _conv_kn2row(xp, pad_spatial(xp, x, begins, ends), w, form.kernel, form.dilations, form.out_shape)
    n = x.shape[0]
    cols = _columns(xp, x, form).reshape(n, group, -1, math.prod(form.out_shape))
    if group == 1 and n == 1:
        y = xp.matmul(w, cols[0, 0])  # a plain 2-D GEMM
    else:
        y = xp.matmul(w, cols)  # (N, G, M/G, P)
    return y.reshape(form.y_shape)


def _columns(xp, x, form):
    """im2col: (N, C*K, P), row (c, kernel offset) holding the input under that offset at every
    output position; 2-D float32/float64 host inputs by the compiled copy
    (conv_compiled.im2col_2d), others through a window view of the padded input."""
    if len(form.kernel) == 2 and xp is np and x.dtype in (np.float32, np.float64) and jit.enabled():
        return im2col_2d(x, form.kernel, form.strides, form.dilations, form.begins, form.out_shape)
    nd = len(form.kernel)
    view = window_view(xp, pad_spatial(xp, x, form.begins, form.ends), form.kernel, form.strides, form.dilations,
                       form.out_shape)
    # (N, C, *out, *k) -> (N, C, *k, *out) so a column holds one output pixel's receptive field
    order = (0, 1) + tuple(range(2 + nd, 2 + 2 * nd)) + tuple(range(2, 2 + nd))
    return view.transpose(order).reshape(x.shape[0], -1, math.prod(form.out_shape))


# Column matrices up to this many elements are gathered with one cached index instead of a
# padded copy, a window view and a transposed copy: for the small 1-D convolutions of silero VAD
# (64-129 channels, 1-3 positions) the NumPy calls' fixed costs were most of the 40-80 us a node
# took (onnxruntime 6-18 us).
SMALL_CONV_COLUMNS = 32768


def _conv_small(x, w, index, tail, y_shape):
    """im2col of a small input as one gather (`index`, ConvForm._small_columns: column (c,
    kernel offset) of output position p reads x's flat element, or one of the `tail` values, 0
    and 1, appended after them), then one GEMM with w (M, C*K, then the bias column if any)."""
    n = x.shape[0]
    flat = np.concatenate((x.reshape(n, -1), tail), axis=1)
    y = np.matmul(w, flat[0][index] if n == 1 else flat[:, index])
    return y.reshape(y_shape)


@functools.lru_cache(maxsize=256)
def _columns_index(in_shape, kernel, strides, dilations, begins, ends) -> np.ndarray:
    """(C*K, P) flat indices into a (C, *S) input with one zero appended (index C*prod(S))."""
    c, spatial = in_shape[0], in_shape[1:]
    out_shape = conv_out_shape(spatial, kernel, strides, dilations, begins, ends)
    size = math.prod(spatial)
    inside = np.ones((1,) * (2 * len(spatial)), dtype=bool)
    flat = np.zeros((1,) * (2 * len(spatial)), dtype=np.int64)
    nd = len(spatial)
    for axis, (extent, k, s, d, b, o) in enumerate(zip(spatial, kernel, strides, dilations, begins, out_shape)):
        pos = (np.arange(k)[:, None] * d + np.arange(o)[None, :] * s - b)  # (k, o) input coordinate
        shape = [1] * (2 * nd)
        shape[axis], shape[nd + axis] = k, o
        pos = pos.reshape(shape)
        inside = inside & (pos >= 0) & (pos < extent)
        flat = flat * extent + np.clip(pos, 0, extent - 1)
    per_channel = np.where(inside, flat, -1).reshape(math.prod(kernel), math.prod(out_shape))
    index = per_channel[None] + (np.arange(c) * size)[:, None, None]
    index = np.where(per_channel[None] < 0, c * size, index)
    index = index.reshape(c * math.prod(kernel), -1)
    index.flags.writeable = False
    return index


def _conv_kn2row(xp, xpad, rows, kernel, dilations, out_shape):
    """Stride-1 convolution with fewer output than input channels: one GEMM of every
    (filter, kernel offset) row against the padded input itself, then a shifted sum over
    the offsets (one compiled pass for 2-D kernels: 0.6 -> 0.3 ms of the 1.7 ms of a
    128 -> 32 channel 3x3 on 56x56).  Same FLOPs as im2col, but it never builds the (C*K, P)
    column matrix, which is the expensive part when M is small.  `rows` (M*K, C): the weight's
    (filter, kernel offset) rows (ConvForm)."""
    n, c = xpad.shape[:2]
    k = math.prod(kernel)
    m = rows.shape[0] // k
    padded = xpad.shape[2:]
    z = xp.matmul(rows, xpad.reshape(n, c, -1)).reshape((n, m, k) + tuple(padded))
    if len(kernel) == 2 and xp is np and jit.enabled():
        return shifted_sum(z, kernel, dilations, out_shape)
    y = None
    for idx, offs in enumerate(np.ndindex(*kernel)):
        sl = (slice(None), slice(None), idx) + tuple(
            slice(o * d, o * d + size) for o, d, size in zip(offs, dilations, out_shape))
        if y is None:
            y = z[sl].copy()
        else:
            y += z[sl]
    return y


def col2im_nd(xp, cols, out_full, kernel, in_shape, strides, dilations, origin=None):
    """Scatter-add cols (N, C, *kernel, *in_shape) into (N, C, *out_full): the adjoint of im2col.

    ``origin`` shifts where the first window starts (default 0 on every axis)."""
    n, c = cols.shape[:2]
    nd = len(kernel)
    out = xp.zeros((n, c) + tuple(out_full), dtype=cols.dtype)
    for offs in np.ndindex(*kernel):
        dst = [slice(None), slice(None)]
        for i in range(nd):
            start = offs[i] * dilations[i] + (origin[i] if origin else 0)
            stop = start + strides[i] * (in_shape[i] - 1) + 1
            dst.append(slice(start, stop, strides[i]))
        out[tuple(dst)] += cols[(slice(None), slice(None)) + offs]
    return out


def _tiles(xp, cols, kernel, in_shape):
    """col2im where the windows tile the output without overlap (strides equal to the kernel,
    no dilation; a 2x2 stride-2 upsampling): cols (N, C, *kernel, *in) written into
    (N, C, in_1 * k_1, ...) one kernel offset at a time by strided assignment, with no zeroed
    target and no read-back (PP-OCRv4 det's 24 -> 24 2x2 on 120x160: 2.7 -> 1.1 ms; the
    compiled tiles_2d takes 2-D inputs on the host)."""
    nd = len(kernel)
    y = xp.empty(cols.shape[:2] + tuple(k * i for k, i in zip(kernel, in_shape)), dtype=cols.dtype)
    for offs in np.ndindex(*kernel):
        dst = (slice(None), slice(None)) + tuple(slice(o, None, k) for o, k in zip(offs, kernel))
        y[dst] = cols[(slice(None), slice(None)) + offs]
    return y


def crop_spatial(y, begins, out_shape):
    sl = (slice(None), slice(None)) + tuple(slice(b, b + o) for b, o in zip(begins, out_shape))
    return y[sl]


def compiled_epilogue(xp, X, activation: str = "") -> bool:
    """Whether a convolution of X can take its bias, residual and `activation` (an
    EPILOGUES name) in one compiled pass over its output: NumPy arrays of float32/float64
    (a float16 result is rounded before the activation, as the unfused graph rounds it)."""
    return (xp is np and X.dtype in (np.float32, np.float64) and activation in EPILOGUES
            and jit.enabled())


def conv_float(ctx, X, W, B, auto_pad, dilations, group, kernel_shape, pads, strides, epilogue=None):
    """Shared body of Conv (float types): computes in float32/float64, returns X's dtype.

    ``epilogue`` = (Z, activation, params), where ``compiled_epilogue`` allows it: Z (an array
    broadcast to the output, or None) is added after the bias and the activation applied, all in
    the same compiled pass over the output."""
    xp = ctx.xp
    form = ctx.prepared("conv", (1, 2), (W, B), lambda: ConvForm(
        xp, X.shape, X.dtype, W, B, auto_pad, dilations, group, kernel_shape, pads, strides),
        key=(X.shape, X.dtype))
    y = conv_with_form(xp, X.astype(form.cdt, copy=False), form, group)
    if epilogue is not None or (form.bias is not None and compiled_epilogue(xp, X)):
        z, activation, params = epilogue or (None, "", ())
        y = np.ascontiguousarray(y)
        if z is not None and tuple(z.shape) != tuple(y.shape):
            if np.broadcast_shapes(z.shape, y.shape) != tuple(y.shape):  # Z widens the result
                y = bias_activation(y, form.bias, None, "", ()) + z
                return bias_activation(np.ascontiguousarray(y, dtype=X.dtype), None, None, activation, params)
            z = np.broadcast_to(z, y.shape)
        return bias_activation(y, form.bias, z, activation, params)
    if form.bias is not None:  # (the small path's GEMM added it)
        y += form.bias.reshape((1, -1) + (1,) * (X.ndim - 2))
    return y.astype(X.dtype, copy=False)


# ----------------------------------------------------------------------------- kernels

@kernel("Conv", since=(1, 11, 22), types={"T": FLOATS})
def Conv(ctx, X, W, B=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
         pads=None, strides=None):
    """N-D convolution with groups, dilations, strides and auto_pad (im2col + matmul)."""
    return conv_float(ctx, X, W, B, auto_pad, dilations, group, kernel_shape, pads, strides)


@kernel("ConvInteger", since=10,
        types={"T1": frozenset({"int8", "uint8"}),
               "T2": frozenset({"int8", "uint8"}),
               "T3": frozenset({"int32"})})
def ConvInteger(ctx, x, w, x_zero_point=None, w_zero_point=None, *, auto_pad="NOTSET",
                dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """Integer convolution of (x - x_zero_point) and (w - w_zero_point), int32 result."""
    xp = ctx.xp
    xf = x.astype(np.float64)
    wf = w.astype(np.float64)
    if x_zero_point is not None:
        xf = xf - x_zero_point.astype(np.float64)  # padding then adds exact zeros
    if w_zero_point is not None:
        wzp = w_zero_point.astype(np.float64)
        wf = wf - (wzp.reshape((-1,) + (1,) * (w.ndim - 1)) if wzp.ndim == 1 else wzp)
    y = conv_float(ctx, xf, wf, None, auto_pad, dilations, group, kernel_shape, pads, strides)
    return xp.rint(y).astype(np.int32)


def conv_transpose_geometry(in_shape, kernel, strides, dilations, auto_pad, pads,
                            output_padding, output_shape):
    """(begin pads, output spatial shape) of ConvTranspose, by the spec formula (onnxruntime agrees
    except for a negative total padding, which it clamps to 0)."""
    nd = len(in_shape)
    out_pad = fill_spatial(output_padding, nd, 0)
    full = [s * (i - 1) + op + (k - 1) * d + 1
            for i, k, s, d, op in zip(in_shape, kernel, strides, dilations, out_pad)]
    if output_shape:
        target = [int(v) for v in output_shape][-nd:]
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        target = [i * s for i, s in zip(in_shape, strides)]
    else:
        target = None
    if target is None:
        begins, ends = resolve_pads(in_shape, kernel, strides, dilations, "NOTSET",
                                    pads if auto_pad != "VALID" else None)
        return begins, [f - b - e for f, b, e in zip(full, begins, ends)]
    begins = []
    for f, t in zip(full, target):
        total = f - t
        if auto_pad == "SAME_UPPER":
            begins.append(total // 2)
        else:  # SAME_LOWER, or an explicit output_shape: the extra pad goes in front
            begins.append(total - total // 2)
    return begins, target


@kernel("ConvTranspose", since=(1, 11, 22), types={"T": FLOATS})
def ConvTranspose(ctx, X, W, B=None, *, auto_pad="NOTSET", dilations=None, group=1,
                  kernel_shape=None, output_padding=None, output_shape=None, pads=None, strides=None):
    """Transposed convolution: one matmul to columns, then a col2im scatter-add and a crop."""
    xp = ctx.xp
    nd = X.ndim - 2
    n, c = X.shape[:2]
    kernel = fill_spatial(kernel_shape, nd, 0) if kernel_shape else list(W.shape[2:])
    strides = fill_spatial(strides, nd, 1)
    dilations = fill_spatial(dilations, nd, 1)
    in_shape = list(X.shape[2:])
    begins, out_shape = conv_transpose_geometry(in_shape, kernel, strides, dilations, auto_pad,
                                                pads, output_padding, output_shape)
    cdt = compute_dtype(X.dtype)
    cg = c // group
    mg = W.shape[1]
    k = math.prod(kernel)
    p = math.prod(in_shape)
    x = X.astype(cdt, copy=False).reshape(n, group, cg, p)
    w = W.astype(cdt, copy=False).reshape(group, cg, mg * k).transpose(0, 2, 1)  # (G, M/G*K, C/G)
    cols = xp.matmul(w, x).reshape((n, group * mg) + tuple(kernel) + tuple(in_shape))
    # the scatter target must hold both the full result and the (possibly larger) output_shape
    full = [max(s * (i - 1) + (kk - 1) * d + 1, b + o)
            for i, kk, s, d, b, o in zip(in_shape, kernel, strides, dilations, begins, out_shape)]
    lead = [max(0, -b) for b in begins]
    if strides == kernel and all(d == 1 for d in dilations) and not any(lead) \
            and full == [s * i for s, i in zip(strides, in_shape)]:   # windows tile the output
        if nd == 2 and xp is np and jit.enabled():
            y = crop_spatial(tiles_2d(cols, None if B is None else B.astype(cdt, copy=False)), begins, out_shape)
            return xp.ascontiguousarray(y).astype(X.dtype, copy=False)
        y = _tiles(xp, cols, kernel, in_shape)
    else:
        y = col2im_nd(xp, cols, [f + l for f, l in zip(full, lead)], kernel, in_shape, strides,
                      dilations, origin=lead)
    y = crop_spatial(y, [b + l for b, l in zip(begins, lead)], out_shape)
    if B is not None:
        y = y + B.astype(cdt, copy=False).reshape((1, -1) + (1,) * nd)
    return xp.ascontiguousarray(y).astype(X.dtype, copy=False)


@kernel("Col2Im", since=18, types={"T": NUMERIC | COMPLEX}, host_inputs=(1, 2))
def Col2Im(ctx, input, image_shape, block_shape, *, dilations=None, pads=None, strides=None):
    """Rebuild images (N, C, *image_shape) from sliding blocks (N, C*prod(block), L), summing overlaps."""
    xp = ctx.xp
    image = [int(v) for v in np.asarray(image_shape).tolist()]
    block = [int(v) for v in np.asarray(block_shape).tolist()]
    nd = len(image)
    strides = fill_spatial(strides, nd, 1)
    dilations = fill_spatial(dilations, nd, 1)
    pads = fill_spatial(pads, 2 * nd, 0)
    begins, ends = pads[:nd], pads[nd:]
    blocks = conv_out_shape(image, block, strides, dilations, begins, ends)
    n = input.shape[0]
    c = input.shape[1] // math.prod(block)
    cdt = compute_dtype(input.dtype)
    cols = input.astype(cdt, copy=False).reshape((n, c) + tuple(block) + tuple(blocks))
    padded = [i + b + e for i, b, e in zip(image, begins, ends)]
    y = col2im_nd(xp, cols, padded, block, blocks, strides, dilations)
    return xp.ascontiguousarray(crop_spatial(y, begins, image)).astype(input.dtype, copy=False)


def bilinear_gather(xp, img, ys, xs):
    """Bilinear samples of img (N, C, H, W) at float coordinates ys, xs (N, *S); zero outside.

    Returns (N, C, *S)."""
    n, c, h, w = img.shape
    y0 = xp.floor(ys)
    x0 = xp.floor(xs)
    ly, lx = ys - y0, xs - x0
    y0 = y0.astype(np.int64)
    x0 = x0.astype(np.int64)
    flat = img.reshape(n, c, h * w)
    out = 0
    for dy, wy in ((0, 1 - ly), (1, ly)):
        for dx, wx in ((0, 1 - lx), (1, lx)):
            yy, xx = y0 + dy, x0 + dx
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            idx = xp.where(inside, yy * w + xx, 0).reshape(n, 1, -1)
            vals = xp.take_along_axis(flat, xp.broadcast_to(idx, (n, c, idx.shape[-1])), axis=2)
            weight = xp.where(inside, wy * wx, 0).reshape(n, 1, -1)
            out = out + vals * weight
    return out.reshape((n, c) + ys.shape[1:])


@kernel("DeformConv", since=(19, 22), types={"T": FLOATS})
def DeformConv(ctx, X, W, offset, B=None, mask=None, *, dilations=None, group=1, kernel_shape=None,
               offset_group=1, pads=None, strides=None):
    """2-D deformable convolution: bilinear samples at offset kernel taps, times mask, then matmul."""
    xp = ctx.xp
    if X.ndim != 4:
        raise ValueError(f"DeformConv supports 2-D inputs only, got rank {X.ndim}")
    n, c, h, w_in = X.shape
    m = W.shape[0]
    kernel = fill_spatial(kernel_shape, 2, 0) if kernel_shape else list(W.shape[2:])
    strides = fill_spatial(strides, 2, 1)
    dilations = fill_spatial(dilations, 2, 1)
    pads = fill_spatial(pads, 4, 0)
    oh, ow = conv_out_shape((h, w_in), kernel, strides, dilations, pads[:2], pads[2:])
    kh, kw = kernel
    k = kh * kw
    cdt = compute_dtype(X.dtype)
    x = X.astype(cdt, copy=False)
    off = offset.astype(cdt, copy=False).reshape(n, offset_group, k, 2, oh, ow)
    # base sampling positions (K, OH, OW) of each kernel tap, before offsets
    ky, kx = np.meshgrid(np.arange(kh) * dilations[0], np.arange(kw) * dilations[1], indexing="ij")
    base_y = (ky.reshape(k, 1, 1) + (np.arange(oh) * strides[0] - pads[0]).reshape(1, oh, 1))
    base_x = (kx.reshape(k, 1, 1) + (np.arange(ow) * strides[1] - pads[1]).reshape(1, 1, ow))
    base_y = xp.asarray(base_y.astype(cdt))
    base_x = xp.asarray(base_x.astype(cdt))
    cpg = c // offset_group
    cols = []
    for g in range(offset_group):
        ys = base_y[None] + off[:, g, :, 0]  # (N, K, OH, OW)
        xs = base_x[None] + off[:, g, :, 1]
        sampled = bilinear_gather(xp, x[:, g * cpg:(g + 1) * cpg], ys, xs)  # (N, cpg, K, OH, OW)
        if mask is not None:
            m_g = mask.astype(cdt, copy=False).reshape(n, offset_group, k, oh, ow)[:, g]
            sampled = sampled * m_g[:, None]
        cols.append(sampled)
    cols = xp.concatenate(cols, axis=1).reshape(n, group, (c // group) * k, oh * ow)
    y = xp.matmul(W.astype(cdt, copy=False).reshape(group, m // group, (c // group) * k), cols)
    y = y.reshape(n, m, oh, ow)
    if B is not None:
        y = y + B.astype(cdt, copy=False).reshape(1, -1, 1, 1)
    return y.astype(X.dtype, copy=False)
