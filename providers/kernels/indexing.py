"""Gather/scatter family and other index-driven selection: Compress, OneHot, ReverseSequence."""
import numpy as np

from ortgpu.providers.kernels.shape_ops import host_ints, host_scalar, norm_axis
from ortgpu.providers.base import host_array
from ortgpu.providers.dtype_sets import (
    ALL, BOOL, CUPY, FLOAT, FLOAT6, INDEX, INT2, INTEGER, STANDARD, STRING)
from ortgpu.providers.registry import DATA_DEPENDENT, HOST_ROUND_TRIP, kernel


def _deferral(ctx, mod):
    """(the provider's error flags, node name) when `ctx` runs on a device whose provider
    checks error flags once per run (the CUDA provider: providers/cuda/error_flags.py), else
    None: the range check then reads the indices on the host at once."""
    flags = getattr(getattr(ctx, "ep", None), "error_flags", None)
    return None if flags is None or mod is np else (flags, ctx.node_name)


def _wrap_negative(xp, idx, dim, defer=None):
    """Indices in [-dim, dim) as [0, dim); anything else raises (as onnxruntime does): at once,
    or with `defer` (_deferral) when the run ends, from a device flag (no host read here)."""
    idx = xp.asarray(idx)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"indices must be integers, got {idx.dtype}")
    idx = idx.astype(np.int64, copy=False)
    if idx.size and defer is not None:
        return _wrap_on_device(xp, idx, dim, *defer)
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < -dim or hi >= dim:
            bad = lo if lo < -dim else hi
            raise IndexError(f"index {bad} is out of bounds for a dimension of size {dim}")
        if lo < 0:
            idx = xp.where(idx < 0, idx + dim, idx)
    return idx


def _wrap_on_device(xp, idx, dim, flags, node):
    """Wrapped indices, clipped into [0, dim) so that the gather or scatter stays in bounds,
    and a device flag (found, first bad index, dim) that the provider reads when the run ends."""
    bad = ((idx < -dim) | (idx >= dim)).reshape(-1)
    flag = xp.zeros(3, dtype=np.int64)
    flag[0] = bad.any()
    flag[1] = idx.reshape(-1)[bad.argmax()]
    flag[2] = dim
    flags.defer(flag, node)
    return xp.clip(xp.where(idx < 0, idx + dim, idx), 0, dim - 1)


def _module(xp, a):
    """NumPy for string (object) tensors, which only live on the host; else `xp`."""
    return np if a.dtype == object else xp


def _is_ml_dtype(dt) -> bool:
    """bfloat16/float8 etc. from ml_dtypes: NumPy arithmetic on them is limited or inexact."""
    return np.dtype(dt).kind == "V"


# --- gather ----------------------------------------------------------------------------


@kernel("Gather", since=(1, 11, 13), types={"T": STANDARD, "Tind": INDEX}, capturable=HOST_ROUND_TRIP)
def Gather(ctx, data, indices, *, axis=0):
    """Take slices of `data` along `axis` at `indices` (negative indices count from the end)."""
    mod = _module(ctx.xp, data)
    axis = norm_axis(axis, data.ndim)
    if mod is np and type(indices) is np.ndarray and indices.size == 1 and indices.ndim <= 1 \
            and indices.dtype.kind in "iu":
        # one host index (a shape computation's Gather): checked as a Python int, no array passes
        i, dim = int(indices.item()), data.shape[axis]
        if -dim <= i < dim:
            i = i + dim if i < 0 else i
            if indices.ndim == 0:  # a view of one row (of 1-D data: a 0-d view, of its dtype)
                return data[(slice(None),) * axis + (i,)] if data.ndim > 1 else data[i:i + 1].reshape(())
            return data[(slice(None),) * axis + (slice(i, i + 1),)]  # indices of shape (1,)
    idx = _wrap_negative(mod, indices, data.shape[axis], _deferral(ctx, mod))
    return mod.asarray(mod.take(data, idx, axis=axis))


@kernel("GatherElements", since=(11, 13), types={"T": STANDARD, "Tind": INDEX}, capturable=HOST_ROUND_TRIP)
def GatherElements(ctx, data, indices, *, axis=0):
    """out[i][j][k] = data[indices[i][j][k]][j][k] for axis 0; the output has indices' shape."""
    mod = _module(ctx.xp, data)
    axis = norm_axis(axis, data.ndim)
    if indices.ndim != data.ndim:
        raise ValueError(f"GatherElements: indices rank {indices.ndim} differs from data rank {data.ndim}")
    # indices may be smaller than data off the axis, so no take_along_axis (it broadcasts)
    return data[_elements_index(mod, indices, axis, data.shape[axis], _deferral(ctx, mod))]


def _nd_index(xp, data_shape, indices, batch_dims, defer=None):
    """Advanced-index tuple addressing data (with its batch dims flattened) by `indices`."""
    k = indices.shape[-1]
    if k > len(data_shape) - batch_dims:
        raise ValueError(f"indices' last dim {k} exceeds the data rank {len(data_shape)} "
                         f"minus batch_dims {batch_dims}")
    nbatch = int(np.prod(data_shape[:batch_dims], dtype=np.int64))
    idx = xp.reshape(indices, (nbatch, -1, k)) if indices.size else \
        xp.zeros((nbatch, 0, k), dtype=np.int64)
    parts = [xp.arange(nbatch).reshape(nbatch, 1)]
    for j in range(k):
        parts.append(_wrap_negative(xp, idx[:, :, j], data_shape[batch_dims + j], defer))
    return tuple(parts)


def _gather_nd(xp, data, indices, batch_dims, defer=None):
    batch_shape = data.shape[:batch_dims]
    k = indices.shape[-1]
    flat = xp.reshape(data, (-1,) + data.shape[batch_dims:]) if batch_dims else data[None]
    picked = flat[_nd_index(xp, data.shape, indices, batch_dims, defer)]
    return xp.reshape(picked, tuple(batch_shape) + tuple(indices.shape[batch_dims:-1])
                      + tuple(data.shape[batch_dims + k:]))


@kernel("GatherND", since=11, types={"T": CUPY | STRING}, capturable=HOST_ROUND_TRIP)
def GatherND_11(ctx, data, indices):
    """Gather slices addressed by the last dim of `indices` (no batch dims)."""
    mod = _module(ctx.xp, data)
    return _gather_nd(mod, data, indices, 0, _deferral(ctx, mod))


@kernel("GatherND", since=(12, 13), types={"T": STANDARD}, capturable=HOST_ROUND_TRIP)
def GatherND(ctx, data, indices, *, batch_dims=0):
    """Gather slices addressed by the last dim of `indices`, the first batch_dims dims shared."""
    mod = _module(ctx.xp, data)
    return _gather_nd(mod, data, indices, batch_dims, _deferral(ctx, mod))


# --- scatter ---------------------------------------------------------------------------


_REDUCERS = {"add": "add", "mul": "multiply", "max": "maximum", "min": "minimum"}


def _scatter_into(xp, data, index, updates, reduction):
    """A copy of `data` with `updates` written (or reduced) at the advanced index `index`."""
    mod = _module(xp, data)
    if reduction == "none":
        out = data.copy()
        out[index] = updates  # duplicates: the last write wins, as in onnxruntime's CPU loop
        return out
    if reduction not in _REDUCERS:
        raise ValueError(f"unknown reduction '{reduction}'")
    exact = not _is_ml_dtype(data.dtype)
    out = data.copy() if exact else data.astype(np.float32)
    vals = updates if exact else updates.astype(np.float32)
    if mod is not np and reduction == "mul":
        # CuPy's ufunc.at covers add/subtract/maximum/minimum only: multiply on the host, explicitly
        host = np.array(host_array(out))
        np.multiply.at(host, tuple(host_array(i) if hasattr(i, "shape") else i for i in index)
                       if isinstance(index, tuple) else host_array(index), host_array(vals))
        out = xp.asarray(host)
    else:
        wide = out if mod is np else _at_widened(out, reduction)
        getattr(mod, _REDUCERS[reduction]).at(wide, index, vals.astype(wide.dtype, copy=False))
        if wide is not out:
            out = wide.astype(out.dtype)  # exact: max/min pick an element; add wraps as the narrow type
    return out if exact else out.astype(data.dtype)


# The target dtypes CuPy's ufunc.at takes (CuPy 14.2: scatter_add / scatter_max / scatter_min);
# others raise TypeError there, so a narrower target is reduced in a wider type on the device
_AT_BASE = frozenset(np.dtype(t) for t in ("int32", "int64", "uint32", "uint64", "float32", "float64"))
_AT_DTYPES = {"add": _AT_BASE | {np.dtype(np.float16)}, "max": _AT_BASE, "min": _AT_BASE}
_AT_WIDER = {"float16": np.float32, "int8": np.int32, "int16": np.int32, "uint8": np.uint32,
             "uint16": np.uint32, "bool": np.int32}


def _at_widened(out, reduction):
    """`out` itself when CuPy's ufunc.at takes its dtype for `reduction`, else a widened copy."""
    if np.dtype(out.dtype) in _AT_DTYPES[reduction]:
        return out
    wider = _AT_WIDER.get(np.dtype(out.dtype).name)
    if wider is None:
        raise TypeError(f"ScatterElements/ScatterND reduction '{reduction}' on the device: no wider "
                        f"type for {out.dtype}")
    return out.astype(wider)


def _elements_index(xp, indices, axis, dim, defer=None):
    """The full advanced index of ScatterElements: coordinates of `indices`, `axis` replaced."""
    idx = _wrap_negative(xp, indices, dim, defer)
    grids = []
    for d, n in enumerate(indices.shape):
        if d == axis:
            grids.append(idx)
        else:
            shape = [1] * indices.ndim
            shape[d] = n
            grids.append(xp.arange(n).reshape(shape))
    return tuple(grids)


def _scatter_elements(ctx, data, indices, updates, axis, reduction):
    mod = _module(ctx.xp, data)
    axis = norm_axis(axis, data.ndim)
    if tuple(indices.shape) != tuple(updates.shape):
        raise ValueError(f"indices shape {indices.shape} differs from updates shape {updates.shape}")
    index = _elements_index(mod, indices, axis, data.shape[axis], _deferral(ctx, mod))
    return _scatter_into(mod, data, index, updates, reduction)


@kernel("Scatter", since=(9, 11), types={"T": CUPY | STRING, "Tind": INDEX}, capturable=HOST_ROUND_TRIP)
def Scatter(ctx, data, indices, updates, *, axis=0):
    """Deprecated twin of ScatterElements without reduction."""
    return _scatter_elements(ctx, data, indices, updates, axis, "none")


@kernel("ScatterElements", since=(11, 13, 16, 18), types={"T": STANDARD, "Tind": INDEX},
        capturable=HOST_ROUND_TRIP)
def ScatterElements(ctx, data, indices, updates, *, axis=0, reduction="none"):
    """Copy of `data` with updates[i][j] written at [indices[i][j]][j] (axis 0), or reduced in."""
    return _scatter_elements(ctx, data, indices, updates, axis, reduction)


@kernel("ScatterND", since=(11, 13, 16, 18), types={"T": STANDARD}, capturable=HOST_ROUND_TRIP)
def ScatterND(ctx, data, indices, updates, *, reduction="none"):
    """Copy of `data` with slices addressed by the last dim of `indices` replaced or reduced."""
    mod = _module(ctx.xp, data)
    k = indices.shape[-1]
    if k > data.ndim:
        raise ValueError(f"ScatterND: indices' last dim {k} exceeds the data rank {data.ndim}")
    defer = _deferral(ctx, mod)
    index = tuple(_wrap_negative(mod, indices[..., j], data.shape[j], defer) for j in range(k))
    expected = tuple(indices.shape[:-1]) + tuple(data.shape[k:])
    if tuple(updates.shape) != expected:
        raise ValueError(f"ScatterND: updates shape {updates.shape}, expected {expected}")
    return _scatter_into(mod, data, index, updates, reduction)


@kernel("TensorScatter", since=24, types={"T": ALL - (INT2 | FLOAT6)}, capturable=HOST_ROUND_TRIP)
def TensorScatter(ctx, past_cache, update, write_indices=None, *, axis=-2, mode="linear"):
    """KV-cache update: write `update` into a copy of past_cache along `axis` at each batch's index."""
    mod = _module(ctx.xp, past_cache)
    rank = past_cache.ndim
    axis = norm_axis(axis, rank)
    if axis == 0:
        raise ValueError("TensorScatter: axis cannot be the batch axis 0")
    batch, seq, cap = update.shape[0], update.shape[axis], past_cache.shape[axis]
    start = (mod.zeros((batch,), dtype=np.int64) if write_indices is None
             else mod.asarray(write_indices).astype(np.int64).reshape(batch))
    shape = [1] * rank
    shape[0] = batch
    pos = start.reshape(shape) + mod.arange(seq).reshape([seq if d == axis else 1 for d in range(rank)])
    if mode == "circular":
        pos = pos % cap
    elif mode != "linear":
        raise ValueError(f"TensorScatter: unknown mode '{mode}'")
    elif seq and int(start.max()) + seq > cap:
        raise ValueError(f"TensorScatter: write index + {seq} updates exceed the cache length {cap}")
    index = []
    for d in range(rank):
        if d == axis:
            index.append(pos)
        else:
            s = [1] * rank
            s[d] = update.shape[d]
            index.append(mod.arange(update.shape[d]).reshape(s))
    out = past_cache.copy()
    out[tuple(index)] = update
    return out


# --- other index-driven selection ------------------------------------------------------


@kernel("Compress", since=(9, 11, 28), types={"T": STANDARD, "T1": BOOL}, capturable=DATA_DEPENDENT)
def Compress(ctx, input, condition, *, axis=None):
    """The slices (or flattened elements when axis is absent) where `condition` is true."""
    mod = _module(ctx.xp, input)
    cond = mod.asarray(condition).reshape(-1).astype(bool)
    if axis is None:
        flat = input.reshape(-1)
        return flat[:cond.shape[0]][cond[:flat.shape[0]]]
    axis = norm_axis(axis, input.ndim)
    n = input.shape[axis]
    if cond.shape[0] > n:
        cond = cond[:n]
    sel = mod.nonzero(cond)[0]
    return mod.take(input, sel, axis=axis)


@kernel("OneHot", since=(9, 11, 28),
        types={"T1": INTEGER | FLOAT, "T2": INTEGER | FLOAT, "T3": STANDARD}, host_inputs=(1,))
def OneHot(ctx, indices, depth, values, *, axis=-1):
    """values[1] where the new `axis` position equals the index (mod depth when negative), else values[0]."""
    mod = _module(ctx.xp, values)
    xp = ctx.xp
    d = int(host_scalar(depth))
    rank = indices.ndim + 1
    axis = norm_axis(axis, rank)
    idx = xp.asarray(indices)
    idx = idx.astype(np.int64) if idx.dtype.kind in "iu" else xp.trunc(idx.astype(np.float64)).astype(np.int64)
    idx = xp.where(idx < 0, idx + d, idx)
    positions = xp.arange(d).reshape([d if i == axis else 1 for i in range(rank)])
    hot = xp.expand_dims(idx, axis) == positions  # out-of-range indices match nothing
    pick = hot.astype(np.int64)
    if mod is np and xp is not np:
        pick = np.asarray(pick.get())
    return mod.take(values.reshape(-1), pick)


@kernel("ReverseSequence", since=(10, 28), types={"T": STANDARD})
def ReverseSequence(ctx, input, sequence_lens, *, batch_axis=1, time_axis=0):
    """Reverse the first sequence_lens[b] steps along time_axis for each batch b."""
    mod = _module(ctx.xp, input)
    nb, nt = input.shape[batch_axis], input.shape[time_axis]
    lens = mod.asarray(sequence_lens).astype(np.int64).reshape(nb)
    t = mod.arange(nt)
    # src[b, t] = lens[b]-1-t for t < lens[b], else t
    src = mod.where(t[None, :] < lens[:, None], lens[:, None] - 1 - t[None, :], t[None, :])
    shape = [1] * input.ndim
    shape[batch_axis], shape[time_axis] = nb, nt
    src = src if batch_axis < time_axis else src.T
    src = mod.broadcast_to(src.reshape(shape), input.shape)
    return mod.take_along_axis(input, src, axis=time_axis)


@kernel("NonZero", since=(9, 13), types={"T": STANDARD}, capturable=DATA_DEPENDENT)
def NonZero(ctx, X):
    """Indices of the non-zero elements, shape (rank, count), in row-major order."""
    mod = _module(ctx.xp, X)
    if X.ndim == 0:  # onnxruntime reads a scalar as a 1-element vector
        return mod.zeros((1, int(bool(X.reshape(-1)[0]))), dtype=np.int64)
    x = X.astype(np.float32) if _is_ml_dtype(X.dtype) else X
    if X.dtype == object:
        x = np.asarray([bool(v) for v in X.reshape(-1)]).reshape(X.shape)
    return mod.stack(mod.nonzero(x)).astype(np.int64).reshape(X.ndim, -1)
