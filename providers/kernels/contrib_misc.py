"""Tensor utilities of onnxruntime's com.microsoft domain: Trilu, Range, Pad, Unique, ExpandDims,
GatherND, GridSample, Inverse, CDist, MurmurHash3, SampleOp, UnfoldTensor, CropAndResize,
DynamicTimeWarping, MaxpoolWithMask and SparseToDenseMatMul.

Most are older twins of ai.onnx ops and call those kernels with onnxruntime's argument forms
(Range's optional delta, Pad's pads of shape (2 * rank) or (1, 2 * rank), Unique's outputs in
order of first occurrence without the first-index output).
"""
from __future__ import annotations

import itertools

import numpy as np

from ortgpu.errors import InvalidArgument
from ortgpu.providers.base import host_array
from ortgpu.providers.dtype_sets import ALL, FLOAT, INDEX, NUMERIC, STRING
from ortgpu.providers.kernels import grid, indexing, layout, shape_ops, sorting
from ortgpu.providers.kernels.elementwise import work_dtype
from ortgpu.providers.registry import KernelContext, declare_formals, kernel

MS = "com.microsoft"

declare_formals(MS, "Trilu", ("T", "K"), ("T",))


@kernel("Trilu", since=1, domain=MS, types={"T": ALL - STRING, "K": frozenset({"int64"})}, host_inputs=(1,))
def Trilu(ctx, X, k=None, *, upper=1):
    """The upper (or lower) triangle of the last two axes from diagonal k (ai.onnx Trilu)."""
    return layout.Trilu(ctx, X, k, upper=upper)


@kernel("Range", since=1, domain=MS, types={"*": NUMERIC}, host_inputs=(0, 1, 2), capturable=False)
def Range(ctx, start, limit, delta=None):
    """start, start + delta, ... below limit; delta defaults to 1."""
    if delta is None:
        delta = np.ones((), dtype=start.dtype)
    return shape_ops._range(ctx.xp, start, limit, delta)


declare_formals(MS, "Pad", ("T", "P", "T"), ("T",))


@kernel("Pad", since=1, domain=MS, types={"T": FLOAT, "P": frozenset({"int64"})}, host_inputs=(1, 2))
def Pad(ctx, data, pads, value=None, *, mode="constant"):
    """Pad (negative amounts crop) by pads of shape (2 * rank) or (1, 2 * rank): begins then ends."""
    p = shape_ops.host_ints(pads)
    if pads.ndim not in (1, 2) or len(p) != 2 * data.ndim:
        raise ValueError(f"Pad: input 'pads' must hold 2 * rank = {2 * data.ndim} values, got shape "
                         f"{tuple(pads.shape)}")
    return layout._pad(ctx.xp, data, p, None, mode, layout._fill_value(data, value))


declare_formals(MS, "Unique", ("T",), ("T", "I", "I"))


@kernel("Unique", since=1, domain=MS, provider="cpu", types={"T": NUMERIC, "I": frozenset({"int64"})},
        capturable=False)
def Unique(ctx, x):
    """Unique elements of a 1-D x in order of first occurrence, each element's index into
    them, and their counts."""
    if x.ndim != 1:
        raise ValueError(f"Unique: input 'x' must be 1-D, got shape {tuple(x.shape)}")
    inner = KernelContext(ctx.xp, ctx.provider, ctx.node_name, "Unique", 11, 4, (True,) * 4)
    y, _first, inverse, counts = sorting.Unique(inner, x, sorted=0)
    return y, inverse, counts


declare_formals(MS, "ExpandDims", ("T", "axis"), ("T",))


@kernel("ExpandDims", since=1, domain=MS, types={"T": ALL, "axis": frozenset({"int32"})}, host_inputs=(1,))
def ExpandDims(ctx, X, axis):
    """X with a size-1 axis inserted at `axis` (negative counts from the end of the output)."""
    a = int(shape_ops.host_scalar(axis))
    if not -X.ndim - 1 <= a <= X.ndim:
        raise ValueError(f"ExpandDims: axis {a} is out of range for an input of rank {X.ndim}")
    return ctx.xp.expand_dims(X, a)


declare_formals(MS, "GatherND", ("T", "Tind"), ("T",))


@kernel("GatherND", since=1, domain=MS, types={"T": ALL, "Tind": INDEX})
def GatherND(ctx, data, indices):
    """Slices of data addressed by the last axis of indices (ai.onnx GatherND-11)."""
    return indexing.GatherND_11(ctx, data, indices)


@kernel("GridSample", since=1, domain=MS, types={"*": FLOAT})
def GridSample(ctx, X, Grid, *, align_corners=0, mode="bilinear", padding_mode="zeros"):
    """2-D grid sampling of X (N, C, H, W) at Grid (N, Ho, Wo, 2) (ai.onnx GridSample-16)."""
    if X.ndim != 4:
        raise ValueError(f"GridSample: input 'X' must be 4-D, got shape {tuple(X.shape)}")
    return grid.GridSample(ctx, X, Grid, align_corners=align_corners, mode=mode, padding_mode=padding_mode)


@kernel("Inverse", since=1, domain=MS, types={"*": FLOAT})
def Inverse(ctx, X):
    """The inverse of each square matrix in the last two axes (float16 computed in float32)."""
    if X.ndim < 2 or X.shape[-1] != X.shape[-2]:
        raise ValueError(f"Inverse: input 'X' must end in square matrices, got shape {tuple(X.shape)}")
    dt = work_dtype(X.dtype, widen_half=True)
    return ctx.xp.linalg.inv(X.astype(dt)).astype(X.dtype)


@kernel("CDist", since=1, domain=MS, types={"*": FLOAT})
def CDist(ctx, A, B, *, metric="sqeuclidean"):
    """Pairwise distances between the rows of A (M, K) and B (N, K): squared or plain euclidean."""
    xp = ctx.xp
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[1]:
        raise ValueError(f"CDist: A and B must be (M, K) and (N, K), got {tuple(A.shape)} and {tuple(B.shape)}")
    if metric not in ("sqeuclidean", "euclidean"):
        raise ValueError(f"CDist: metric must be 'sqeuclidean' or 'euclidean', got '{metric}'")
    dt = work_dtype(A.dtype, widen_half=True)
    a, b = A.astype(dt), B.astype(dt)
    d = a[:, None, :] - b[None, :, :]
    dist = (d * d).sum(axis=-1)
    if metric == "euclidean":
        dist = xp.sqrt(dist)
    return dist.astype(A.dtype)


# ------------------------------------------------------------------------- MurmurHash3

_M32 = 0xFFFFFFFF


def _rotl(x, r):
    return ((x << np.uint64(r)) | (x >> np.uint64(32 - r))) & np.uint64(_M32)


def _mix_block(h, k):
    """One 4-byte block of MurmurHash3_x86_32 (uint64 arrays holding 32-bit values)."""
    k = (k * np.uint64(0xCC9E2D51)) & np.uint64(_M32)
    k = _rotl(k, 15)
    k = (k * np.uint64(0x1B873593)) & np.uint64(_M32)
    h = _rotl(h ^ k, 13)
    return (h * np.uint64(5) + np.uint64(0xE6546B64)) & np.uint64(_M32)


def _finish(h, length):
    h = h ^ np.uint64(length)
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & np.uint64(_M32)
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & np.uint64(_M32)
    return h ^ (h >> np.uint64(16))


def murmur3_32(data: bytes, seed: int) -> int:
    """MurmurHash3_x86_32 of a byte string."""
    h = np.uint64(seed & _M32)
    n = len(data) // 4
    for i in range(n):
        h = _mix_block(h, np.uint64(int.from_bytes(data[4 * i:4 * i + 4], "little")))
    tail = data[4 * n:]
    if tail:
        k = np.uint64(int.from_bytes(tail, "little"))
        k = (k * np.uint64(0xCC9E2D51)) & np.uint64(_M32)
        k = _rotl(k, 15)
        h ^= (k * np.uint64(0x1B873593)) & np.uint64(_M32)
    return int(_finish(h, len(data)))


def _murmur_words(words, seed):
    """Hashes of rows of 32-bit little-endian words (uint64 array (n, w)), vectorized."""
    h = np.full(words.shape[0], seed & _M32, dtype=np.uint64)
    for j in range(words.shape[1]):
        h = _mix_block(h, words[:, j])
    return _finish(h, 4 * words.shape[1])


declare_formals(MS, "MurmurHash3", ("T1",), ("T2",))


@kernel("MurmurHash3", since=1, domain=MS, provider="cpu",
        types={"T1": frozenset({"int32", "uint32", "int64", "uint64", "float32", "float64"}) | STRING,
               "T2": frozenset({"int32", "uint32"})}, capturable=False)
def MurmurHash3(ctx, X, *, positive=1, seed=0):
    """MurmurHash3 (x86, 32-bit) of each element's bytes (a string's UTF-8); uint32 output with
    positive=1, else the same bits as int32."""
    if X.dtype == object:
        flat = [murmur3_32(str(v).encode("utf-8"), seed) for v in X.reshape(-1)]
        h = np.array(flat, dtype=np.uint64).reshape(X.shape)
    else:
        if X.dtype.itemsize not in (4, 8):
            raise ValueError(f"MurmurHash3: unsupported element type {X.dtype}")
        raw = np.ascontiguousarray(X).reshape(-1).view("<u4").astype(np.uint64)
        h = _murmur_words(raw.reshape(X.size, X.dtype.itemsize // 4), seed).reshape(X.shape)
    out = h.astype(np.uint32)
    return out if positive else out.view(np.int32)


@kernel("SampleOp", since=1, domain=MS, types={"*": FLOAT})
def SampleOp(ctx, X):
    """onnxruntime's sample contrib op: returns its input."""
    return X


@kernel("UnfoldTensor", since=1, domain=MS, types={"*": ALL})
def UnfoldTensor(ctx, input, *, dim=-1, size, step=1):
    """Windows of `size` elements every `step` along `dim`, as a new last axis (torch's unfold):
    `dim` becomes (n - size) // step + 1 long."""
    xp = ctx.xp
    d = dim + input.ndim if dim < 0 else dim
    if not 0 <= d < input.ndim or size < 1 or step < 1 or size > input.shape[d]:
        raise ValueError(f"UnfoldTensor: dim={dim}, size={size}, step={step} do not fit shape "
                         f"{tuple(input.shape)}")
    count = (input.shape[d] - size) // step + 1
    starts = xp.arange(count) * step
    idx = starts.reshape(-1, 1) + xp.arange(size).reshape(1, -1)     # (count, size)
    taken = xp.take(input, idx.reshape(-1), axis=d)                  # dim -> count * size
    shape = input.shape[:d] + (count, size) + input.shape[d + 1:]
    return xp.moveaxis(taken.reshape(shape), d + 1, -1)


declare_formals(MS, "CropAndResize", ("T1", "T1", "T2", "T2"), ("T1",))


@kernel("CropAndResize", since=1, domain=MS, types={"T1": FLOAT, "T2": frozenset({"int32"})},
        host_inputs=(2, 3), capturable=False)
def CropAndResize(ctx, X, rois, batch_indices, crop_size, *, mode="bilinear", extrapolation_value=0.0):
    """Crop boxes (y1, x1, y2, x2 in [0, 1] of the image) out of X (N, C, H, W) and resize each to
    crop_size (bilinear or nearest), as TensorFlow's crop_and_resize; samples outside the image
    get extrapolation_value."""
    xp = ctx.xp
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"CropAndResize: mode must be 'bilinear' or 'nearest', got '{mode}'")
    if X.ndim != 4 or rois.ndim != 2 or rois.shape[1] != 4:
        raise ValueError(f"CropAndResize: X must be (N, C, H, W) and rois (R, 4), got {tuple(X.shape)} "
                         f"and {tuple(rois.shape)}")
    ch, cw = (int(v) for v in host_array(crop_size).reshape(-1)[:2])
    n, c, h, w = X.shape
    idx = host_array(batch_indices).reshape(-1).astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"CropAndResize: batch_indices must lie in [0, {n}), got {idx.tolist()}")
    dt = work_dtype(X.dtype, widen_half=True)
    r = rois.astype(dt)

    def coords(lo, hi, size, count):
        """(R, count) sample positions in pixels along one axis."""
        if count > 1:
            t = xp.arange(count, dtype=dt) * ((hi - lo) * (size - 1) / (count - 1))[:, None]
            return lo[:, None] * (size - 1) + t
        return (0.5 * (lo + hi) * (size - 1))[:, None]

    ys = coords(r[:, 0], r[:, 2], h, ch)   # (R, ch)
    xs = coords(r[:, 1], r[:, 3], w, cw)   # (R, cw)
    img = X.astype(dt)[xp.asarray(idx)]    # (R, C, H, W)
    rr = xp.arange(len(idx))[:, None, None, None]
    cc = xp.arange(c)[None, :, None, None]
    if mode == "nearest":
        # round half away from zero (C's roundf); negative positions are extrapolated anyway
        yi = xp.clip(xp.floor(ys + 0.5), 0, h - 1).astype(np.int64)[:, None, :, None]
        xi = xp.clip(xp.floor(xs + 0.5), 0, w - 1).astype(np.int64)[:, None, None, :]
        out = img[rr, cc, yi, xi]
    else:
        y0 = xp.clip(xp.floor(ys), 0, h - 1).astype(np.int64)
        x0 = xp.clip(xp.floor(xs), 0, w - 1).astype(np.int64)
        y1, x1 = xp.minimum(y0 + 1, h - 1), xp.minimum(x0 + 1, w - 1)
        fy = (ys - xp.floor(ys))[:, None, :, None]
        fx = (xs - xp.floor(xs))[:, None, None, :]

        def at(yy, xx):
            return img[rr, cc, yy[:, None, :, None], xx[:, None, None, :]]

        top = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * fx
        bottom = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * fx
        out = top + (bottom - top) * fy
    outside = ((ys < 0) | (ys > h - 1))[:, None, :, None] | ((xs < 0) | (xs > w - 1))[:, None, None, :]
    out = xp.where(outside, dt.type(extrapolation_value), out)
    return out.astype(X.dtype)


declare_formals(MS, "DynamicTimeWarping", ("F",), ("I",))


@kernel("DynamicTimeWarping", since=1, domain=MS, provider="cpu",
        types={"F": frozenset({"float32"}), "I": frozenset({"int32"})}, capturable=False)
def DynamicTimeWarping(ctx, input):
    """The cheapest monotone path through an (M, N) cost matrix (or (1, M, N)) from (0, 0) to
    (M-1, N-1), as (2, L) int32 rows of i and j indices (Whisper's word timestamps).  Steps are
    diagonal, down or right; ties prefer diagonal, then down."""
    x = np.asarray(input, dtype=np.float64)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise ValueError(f"DynamicTimeWarping: input must be (M, N) or (1, M, N), got shape {tuple(input.shape)}")
    m, n = x.shape
    cost = np.full((m + 1, n + 1), np.inf)
    cost[0, 0] = 0
    trace = np.zeros((m + 1, n + 1), np.int8)
    trace[0, :], trace[:, 0] = 2, 1
    for j in range(1, n + 1):
        for i in range(1, m + 1):
            c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
            if c0 < c1 and c0 < c2:
                best, t = c0, 0
            elif c1 < c0 and c1 < c2:
                best, t = c1, 1
            else:
                best, t = c2, 2
            cost[i, j] = x[i - 1, j - 1] + best
            trace[i, j] = t
    i, j, path = m, n, []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        t = trace[i, j]
        if t == 0:
            i, j = i - 1, j - 1
        elif t == 1:
            i -= 1
        else:
            j -= 1
    return np.array(path[::-1], dtype=np.int32).T.copy()


declare_formals(MS, "MaxpoolWithMask", ("T", "M"), ("T",))


def _masked_window(mask_flat, spatial, starts, ends):
    """Flat spatial indices a MaxpoolWithMask window reads: rows of the window in order, each
    scanned along the last axis up to (not including) the first masked element, except that
    flat index 0 is never checked (onnxruntime's loop)."""
    picked = []
    outer = [range(s, e) for s, e in zip(starts[:-1], ends[:-1])]
    strides = np.cumprod((1,) + tuple(spatial[::-1]))[:-1][::-1]
    for pos in itertools.product(*outer):
        base = int(sum(p * st for p, st in zip(pos, strides[:-1])))
        for w in range(starts[-1], ends[-1]):
            idx = base + w
            if idx > 0 and mask_flat[idx] == 0:
                break
            picked.append(idx)
    return picked


@kernel("MaxpoolWithMask", since=1, domain=MS, types={"T": frozenset({"float32"}), "M": frozenset({"int32"})},
        host_inputs=(1,), capturable=False)
def MaxpoolWithMask(ctx, X, M, *, auto_pad="NOTSET", kernel_shape, pads=None, storage_order=0, strides=None):
    """MaxPool where each window row stops at its first element masked out by M (only M's first
    spatial plane is read, for every sample and channel); a window reading nothing gives the
    lowest float32, as onnxruntime's kernel."""
    xp = ctx.xp
    if auto_pad not in ("NOTSET", "VALID") or storage_order:
        raise NotImplementedError("MaxpoolWithMask: only explicit pads (auto_pad NOTSET/VALID) and "
                                  "storage_order=0 are supported")
    nd = X.ndim - 2
    spatial = tuple(X.shape[2:])
    k = list(kernel_shape)
    st = list(strides) if strides else [1] * nd
    p = list(pads) if pads else [0] * (2 * nd)
    out_shape = [(spatial[i] + p[i] + p[i + nd] - k[i]) // st[i] + 1 for i in range(nd)]
    mask_flat = host_array(M).reshape(-1)[:int(np.prod(spatial))]
    flat = X.reshape(X.shape[:2] + (-1,))
    lowest = np.finfo(np.float32).min
    cols = []
    for o in itertools.product(*[range(n) for n in out_shape]):
        starts = [max(o[i] * st[i] - p[i], 0) for i in range(nd)]
        ends = [min(o[i] * st[i] - p[i] + k[i], spatial[i]) for i in range(nd)]
        idx = _masked_window(mask_flat, spatial, starts, ends)
        if idx:
            cols.append(flat[:, :, xp.asarray(idx)].max(axis=-1))
        else:
            cols.append(xp.full(X.shape[:2], lowest, dtype=X.dtype))
    return xp.stack(cols, axis=-1).reshape(X.shape[:2] + tuple(out_shape))


declare_formals(MS, "WordConvEmbedding", ("T", "T1", "T1", "T1"), ("T1",))


@kernel("WordConvEmbedding", since=1, domain=MS, types={"T": frozenset({"int32"}), "T1": frozenset({"float32"})},
        capturable=False)
def WordConvEmbedding(ctx, Sequence, W, B, C, *, embedding_size=-1, conv_window_size=-1, char_embedding_size=-1):
    """Word embeddings from characters: each word's (non-zero) character ids are embedded by C,
    convolved with W (filters, 1, window, char_dim) + B, passed through tanh and max-pooled over
    positions; output (..., filters)."""
    xp = ctx.xp
    f, _, k, e = W.shape
    if C.shape[1] != e or B.shape != (f,):
        raise ValueError(f"WordConvEmbedding: W {tuple(W.shape)}, B {tuple(B.shape)} and C {tuple(C.shape)} "
                         f"do not fit together")
    words = Sequence.reshape(-1, Sequence.shape[-1])
    lengths = (words != 0).sum(axis=1)
    emb = C[words]                                            # (words, chars, e)
    n_words, chars = words.shape
    windows = max(chars - k + 1, 1)
    pad = max(k - chars, 0)
    if pad:
        emb = xp.concatenate([emb, xp.zeros((n_words, pad, e), emb.dtype)], axis=1)
    stacked = xp.stack([emb[:, p:p + k] for p in range(windows)], axis=1)   # (words, windows, k, e)
    conv = xp.tanh(xp.einsum("nwke,fke->nwf", stacked, W[:, 0]) + B)
    valid = xp.arange(windows).reshape(1, -1) < xp.maximum(lengths - k + 1, 1).reshape(-1, 1)
    conv = xp.where(valid[..., None], conv, -xp.inf)
    return conv.max(axis=1).astype(np.float32).reshape(Sequence.shape[:-1] + (f,))


declare_formals(MS, "SparseToDenseMatMul", ("T", "T1"), ("T1",))
_SPARSE_MATMUL = frozenset({"float32", "float64", "int32", "int64", "uint32", "uint64"})


def _sparse_operand(A):
    """The dense 2-D array of SparseToDenseMatMul's A: an ortgpu SparseTensor (COO with 2-D or
    flat indices, CSR) or a dense array."""
    if getattr(A, "_is_sparse_tensor", False):
        if A.format() == 4:   # OrtSparseFormat.ORT_SPARSE_BLOCK_SPARSE
            raise InvalidArgument("SparseToDenseMatMul: input A must be COO or CSR, not block-sparse")
        if A.values().size == 0:   # an empty CSR has empty outer indices too (onnxruntime's rule)
            return np.zeros(tuple(A.dense_shape()), dtype=A.values().dtype)
        A = A.to_dense()
    if A.ndim != 2:
        raise InvalidArgument(f"SparseToDenseMatMul: input A must be 2-D, got shape {tuple(A.shape)}")
    return A


@kernel("SparseToDenseMatMul", since=1, domain=MS, provider="cpu", types={"T": _SPARSE_MATMUL, "T1": _SPARSE_MATMUL},
        capturable="a sparse input")
def SparseToDenseMatMul(ctx, A, B, *, alpha=1.0, transA=0, transB=0):
    """alpha * op(A) @ op(B) for a sparse 2-D A and a dense 2-D B (op: transpose when transA /
    transB), computed densely in B's type (integers wrap as in onnxruntime).  onnxruntime 1.32
    applies alpha to float32 only and ignores it for the other types; so does this kernel."""
    A = _sparse_operand(A)
    if B.ndim != 2:
        raise InvalidArgument(f"SparseToDenseMatMul: input B must be 2-D, got shape {tuple(B.shape)}")
    a = A.T if transA else A
    b = B.T if transB else B
    if a.shape[1] != b.shape[0]:
        raise InvalidArgument(f"SparseToDenseMatMul: op(A) {tuple(a.shape)} and op(B) {tuple(b.shape)} do not "
                              f"multiply (transA={transA}, transB={transB})")
    y = np.matmul(a.astype(B.dtype), b)
    if alpha != 1.0 and B.dtype == np.float32:
        y = y * np.float32(alpha)
    return y
