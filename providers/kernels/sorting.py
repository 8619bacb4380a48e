"""Order-based selection: TopK, ArgMax/ArgMin and Unique."""
import numpy as np

from ortgpu.providers.kernels.shape_ops import host_scalar, norm_axis
from ortgpu.providers.dtype_sets import FLOAT, NUMERIC, STANDARD
from ortgpu.providers.registry import DATA_DEPENDENT, kernel


def _sort_key(x):
    """An array NumPy can compare exactly like `x` (ml_dtypes floats widen to float32)."""
    return x.astype(np.float32) if np.dtype(x.dtype).kind == "V" else x


def _top_k(xp, X, k, axis, largest):
    axis = norm_axis(axis, X.ndim)
    n = X.shape[axis]
    if not 0 <= k <= n:
        raise ValueError(f"TopK: k = {k} is outside [0, {n}] for axis {axis}")
    key = _sort_key(X)
    if largest:
        # a stable ascending sort of the reversed axis, reversed again, sorts descending with
        # ties kept in index order
        rev = xp.flip(key, axis=axis)
        order = xp.flip(xp.argsort(rev, axis=axis, kind="stable"), axis=axis)
        order = (n - 1) - order
    else:
        order = xp.argsort(key, axis=axis, kind="stable")
    idx = xp.take(order, xp.arange(k), axis=axis).astype(np.int64)
    return xp.take_along_axis(X, idx, axis=axis), idx


@kernel("TopK", since=1, types={"T": FLOAT, "I": frozenset({"int64"})})
def TopK_1(ctx, X, *, k, axis=-1):
    """The k largest elements along `axis` (k is an attribute) and their indices."""
    return _top_k(ctx.xp, X, k, axis, True)


@kernel("TopK", since=10, types={"T": FLOAT, "I": frozenset({"int64"})}, host_inputs=(1,))
def TopK_10(ctx, X, K, *, axis=-1):
    """The K largest elements along `axis` and their indices; ties keep the lower index first."""
    return _top_k(ctx.xp, X, int(host_scalar(K)), axis, True)


@kernel("TopK", since=(11, 24), types={"T": NUMERIC, "I": frozenset({"int64"})}, host_inputs=(1,))
def TopK(ctx, X, K, *, axis=-1, largest=1, sorted=1):
    """The K largest (or smallest) elements along `axis`, sorted, ties by lower index."""
    # sorted=0 leaves the order unspecified; the sorted order is a valid answer
    return _top_k(ctx.xp, X, int(host_scalar(K)), axis, bool(largest))


def _arg_extreme(xp, data, axis, keepdims, select_last_index, largest):
    axis = norm_axis(axis, data.ndim)
    key = _sort_key(data)
    pick = xp.argmax if largest else xp.argmin
    if select_last_index:
        n = data.shape[axis]
        out = (n - 1) - pick(xp.flip(key, axis=axis), axis=axis)
    else:
        out = pick(key, axis=axis)
    out = xp.asarray(out).astype(np.int64)
    return xp.expand_dims(out, axis) if keepdims == 1 else out  # as onnxruntime: only 1 keeps


@kernel("ArgMax", since=(1, 11, 12, 13), types={"T": NUMERIC})
def ArgMax(ctx, data, *, axis=0, keepdims=1, select_last_index=0):
    """Index of the largest element along `axis` (first one, or last with select_last_index)."""
    return _arg_extreme(ctx.xp, data, axis, keepdims, select_last_index, True)


@kernel("ArgMin", since=(1, 11, 12, 13), types={"T": NUMERIC})
def ArgMin(ctx, data, *, axis=0, keepdims=1, select_last_index=0):
    """Index of the smallest element along `axis` (first one, or last with select_last_index)."""
    return _arg_extreme(ctx.xp, data, axis, keepdims, select_last_index, False)


@kernel("Unique", since=(11, 28), provider="cpu", types={"T": STANDARD}, capturable=DATA_DEPENDENT)
def Unique(ctx, X, *, axis=None, sorted=1):
    """Unique elements (or slices along `axis`), first indices, inverse indices and counts."""
    if axis is None:
        items = X.reshape(-1)
        key = _sort_key(items)
        _, first, inverse, counts = np.unique(key, return_index=True, return_inverse=True,
                                              return_counts=True)
    else:
        axis = norm_axis(axis, X.ndim)
        items = np.moveaxis(X, axis, 0)
        key = _sort_key(items).reshape(items.shape[0], -1)
        _, first, inverse, counts = np.unique(key, axis=0, return_index=True,
                                              return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    if not sorted:  # renumber the unique values by first occurrence
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        first, counts, inverse = first[order], counts[order], rank[inverse]
    Y = items[first] if axis is None else np.take(X, first, axis=axis)
    i64 = np.int64
    return Y, first.astype(i64), inverse.astype(i64), counts.astype(i64)
