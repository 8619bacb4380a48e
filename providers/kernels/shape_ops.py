"""Shape manipulation: constants, shape queries, reshapes, transposes, concat/split and slicing.

Shape-like inputs (a Reshape's target shape, Slice's starts, ...) are small int tensors
that are read into Python ints on the host; the data itself stays in the array module.
"""
import numpy as np

from ortgpu.providers.dtype_sets import (
    ALL, BOOL, COMPLEX, CUPY, FLOAT, FLOAT6, FLOATS, INDEX, NON_STRING, NUMERIC, STANDARD, STRING)
from ortgpu.providers.registry import kernel


def host_ints(a) -> list[int]:
    """A small integer tensor (numpy or cupy, any rank) as a flat list of Python ints."""
    if a is None:
        return []
    if isinstance(a, (list, tuple)):
        return [int(v) for v in a]
    return [int(v) for v in a.reshape(-1).tolist()]


def host_scalar(a):
    """The single element of a 0-d or 1-element tensor as a Python number."""
    return a.reshape(-1)[0].item() if hasattr(a, "reshape") else a


def norm_axis(axis: int, rank: int, name: str = "axis") -> int:
    """`axis` in [-rank, rank-1] as a non-negative axis; raises on out of range."""
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"{name} {axis} is out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


# --- constants -----------------------------------------------------------------------


@kernel("Constant", since=(1, 9, 11, 12, 13, 19, 21, 23, 24, 25), types={"T": ALL - FLOAT6})
def Constant(ctx, *, value=None, sparse_value=None, value_float=None, value_floats=None,
             value_int=None, value_ints=None, value_string=None, value_strings=None):
    """The one attribute that is set, as a tensor (sparse_value arrives densified)."""
    xp = ctx.xp
    if value is not None:
        return value if value.dtype == object else xp.asarray(value)
    if sparse_value is not None:
        return xp.asarray(sparse_value)
    if value_float is not None:
        return xp.asarray(value_float, dtype=np.float32)
    if value_floats is not None:
        return xp.asarray(value_floats, dtype=np.float32)
    if value_int is not None:
        return xp.asarray(value_int, dtype=np.int64)
    if value_ints is not None:
        return xp.asarray(value_ints, dtype=np.int64)
    if value_string is not None:
        return np.array(value_string, dtype=object)
    if value_strings is not None:
        return np.array(value_strings, dtype=object)
    raise ValueError("Constant sets none of its value attributes")


@kernel("ConstantOfShape", since=(9, 20, 21, 23, 24, 25),
        types={"T1": frozenset({"int64"}), "T2": NON_STRING - (COMPLEX | FLOAT6)}, host_inputs=(0,))
def ConstantOfShape(ctx, input, *, value=None):
    """A tensor of shape `input` filled with the single element of `value` (float32 0 by default)."""
    shape = tuple(host_ints(input))
    if value is None:
        return ctx.xp.zeros(shape, dtype=np.float32)
    if value.dtype == object:
        return np.full(shape, value.reshape(-1)[0], dtype=object)
    fill = value.reshape(-1)[0]
    out = ctx.xp.empty(shape, dtype=value.dtype)
    out[...] = fill
    return out


@kernel("EyeLike", since=(9, 22), types={"T1": NUMERIC | BOOL, "T2": NUMERIC | BOOL})
def EyeLike(ctx, input, *, dtype=None, k=0):
    """A 2-D matrix shaped like `input` with ones on diagonal k, of type `dtype` or input's."""
    from ortgpu.dtypes import np_dtype
    xp = ctx.xp
    dt = np_dtype(dtype) if dtype is not None else input.dtype
    rows, cols = input.shape
    out = xp.zeros((rows, cols), dtype=dt)
    r = xp.arange(max(0, -k), min(rows, cols - k) if cols - k > 0 else 0)
    if r.size:
        out[r, r + k] = 1
    return out


@kernel("Range", since=(11, 27), types={"T": FLOATS | INDEX | frozenset({"int16"})}, host_inputs=(0, 1, 2))
def Range(ctx, start, limit, delta, *, stash_type=1):
    """start, start+delta, ... up to limit (exclusive); floats are start + i*delta in float32+."""
    # computing each element directly (not by accumulation) is what stash_type=1 asks for
    return _range(ctx.xp, start, limit, delta)


def _range(xp, start, limit, delta):
    dt = np.dtype(start.dtype)
    s, l, d = (host_scalar(v) for v in (start, limit, delta))
    if d == 0:
        raise ValueError("Range: delta cannot be 0")
    if dt.kind in "iu":
        n = max(-(-(l - s) // d), 0)  # exact ceil division for integers
        return xp.asarray(s + d * xp.arange(n, dtype=np.int64), dtype=dt)
    # floats: count and values in float32 (float64 for double), then cast back
    work = np.float64 if dt == np.float64 else np.float32
    n = max(int(np.ceil((work(l) - work(s)) / work(d))), 0)
    vals = xp.arange(n, dtype=work) * work(d) + work(s)
    return vals.astype(dt)


# --- shape queries ---------------------------------------------------------------------


@kernel("Shape", since=(1, 13, 15, 19, 21, 23, 24, 25),
        types={"T": ALL - FLOAT6, "T1": frozenset({"int64"})})
def Shape(ctx, data, *, start=0, end=None):
    """The shape as int64, sliced to [start, end) with Python-style clamping (opset 15)."""
    dims = data.shape[start:end]
    return ctx.xp.asarray(dims, dtype=np.int64)


@kernel("Size", since=(1, 13, 19, 21, 23, 24, 25),
        types={"T": ALL - FLOAT6, "T1": frozenset({"int64"})})
def Size(ctx, data):
    """The element count as an int64 scalar."""
    return ctx.xp.asarray(data.size, dtype=np.int64)


# --- reshapes --------------------------------------------------------------------------


def _reshape(xp, data, shape, allowzero):
    dims = list(shape)
    if not allowzero:
        for i, d in enumerate(dims):
            if d == 0:
                if i >= data.ndim:
                    raise ValueError(f"Reshape: 0 at position {i} copies a dimension the "
                                     f"rank-{data.ndim} input lacks")
                dims[i] = data.shape[i]
    return xp.reshape(data, tuple(dims))


@kernel("Reshape", since=1, types={"T": FLOAT})
def Reshape_1(ctx, data, *, shape=(), consumed_inputs=None):
    """Reshape to the `shape` attribute (0 copies the input dim, -1 is inferred)."""
    return _reshape(ctx.xp, data, [int(s) for s in shape], False)


@kernel("Reshape", since=(5, 13, 14, 19, 21, 23, 24, 25), types={"T": ALL - FLOAT6}, host_inputs=(1,))
def Reshape(ctx, data, shape, *, allowzero=0):
    """Reshape to `shape`: 0 copies the input dim unless allowzero, -1 is inferred."""
    return _reshape(ctx.xp, data, host_ints(shape), allowzero)


@kernel("Flatten", since=(1, 9, 11, 13, 21, 23, 24, 25), types={"T": ALL - FLOAT6})
def Flatten(ctx, input, *, axis=1):
    """2-D view: dims before `axis` form the rows, the rest the columns."""
    r = input.ndim
    if not -r <= axis <= r:
        raise ValueError(f"Flatten: axis {axis} out of range for rank {r}")
    if axis < 0:
        axis += r
    rows = int(np.prod(input.shape[:axis], dtype=np.int64))
    cols = int(np.prod(input.shape[axis:], dtype=np.int64))
    return ctx.xp.reshape(input, (rows, cols))


def _squeeze(xp, data, axes):
    if not axes:
        return xp.reshape(data, tuple(d for d in data.shape if d != 1))
    axes = {norm_axis(a, data.ndim, "Squeeze axis") for a in axes}
    for a in axes:
        if data.shape[a] != 1:
            raise ValueError(f"Squeeze: dimension {a} has size {data.shape[a]}, not 1")
    return xp.reshape(data, tuple(d for i, d in enumerate(data.shape) if i not in axes))


@kernel("Squeeze", since=(1, 11), types={"T": CUPY | STRING})
def Squeeze_1(ctx, data, *, axes=None):
    """Drop the size-1 dims in the `axes` attribute (all size-1 dims when absent)."""
    return _squeeze(ctx.xp, data, axes)


@kernel("Squeeze", since=(13, 21, 23, 24, 25), types={"T": ALL - FLOAT6}, host_inputs=(1,))
def Squeeze(ctx, data, axes=None):
    """Drop the size-1 dims in the `axes` input (all size-1 dims when absent)."""
    a = _one_axis(axes, data.ndim)
    if a is not None and data.shape[a] == 1:  # one valid axis, the usual case: no list work
        shape = data.shape
        return data.reshape(shape[:a] + shape[a + 1:])
    return _squeeze(ctx.xp, data, host_ints(axes))


def _one_axis(axes, rank: int):
    """The axis a one-element host `axes` tensor names, made non-negative, when it is in
    [-rank, rank); else None (no axes, several, or out of range: the general path checks)."""
    if type(axes) is not np.ndarray or axes.size != 1 or axes.dtype.kind not in "iu":
        return None
    a = int(axes.item())
    if -rank <= a < rank:
        return a + rank if a < 0 else a
    return None


def _unsqueeze(xp, data, axes):
    rank = data.ndim + len(axes)
    where = sorted(norm_axis(a, rank, "Unsqueeze axis") for a in axes)
    if len(set(where)) != len(where):
        raise ValueError(f"Unsqueeze: repeated axes {axes}")
    dims = list(data.shape)
    for a in where:
        dims.insert(a, 1)
    return xp.reshape(data, tuple(dims))


@kernel("Unsqueeze", since=(1, 11), types={"T": CUPY | STRING})
def Unsqueeze_1(ctx, data, *, axes=()):
    """Insert size-1 dims at the `axes` attribute (positions in the output)."""
    return _unsqueeze(ctx.xp, data, list(axes))


@kernel("Unsqueeze", since=(13, 21, 23, 24, 25), types={"T": ALL - FLOAT6}, host_inputs=(1,))
def Unsqueeze(ctx, data, axes):
    """Insert size-1 dims at the `axes` input (positions in the output, may be negative)."""
    a = _one_axis(axes, data.ndim + 1)
    if a is not None:  # one valid axis, the usual case
        shape = data.shape
        return data.reshape(shape[:a] + (1,) + shape[a:])
    return _unsqueeze(ctx.xp, data, host_ints(axes))


@kernel("Transpose", since=(1, 13, 21, 23, 24, 25), types={"T": ALL - FLOAT6})
def Transpose(ctx, data, *, perm=None):
    """Permute the dims by `perm` (reversed when absent)."""
    if perm is None:
        perm = tuple(range(data.ndim - 1, -1, -1))
    return ctx.xp.transpose(data, tuple(perm))


# --- concat, split, slice --------------------------------------------------------------


@kernel("Concat", since=(1, 4, 11, 13), types={"T": STANDARD})
def Concat(ctx, *inputs, axis=1):
    """Join the inputs along `axis` (negative allowed from opset 11)."""
    if len(inputs) == 1:
        return inputs[0]
    if any(x.dtype == object for x in inputs):
        return np.concatenate(inputs, axis=axis)
    return ctx.xp.concatenate(inputs, axis=axis)


def _split(data, axis, sizes):
    axis = norm_axis(axis, data.ndim)
    lead = (slice(None),) * axis
    outs, pos = [], 0
    for s in sizes:
        outs.append(data[lead + (slice(pos, pos + s),)])
        pos += s
    if pos != data.shape[axis]:
        raise ValueError(f"Split: sizes {list(sizes)} do not sum to dimension {data.shape[axis]}")
    return tuple(outs)


def _equal_sizes(dim, parts, allow_uneven):
    if parts <= 0:
        raise ValueError("Split: the number of outputs must be positive")
    if dim % parts == 0:
        return [dim // parts] * parts
    if not allow_uneven:
        raise ValueError(f"Split: dimension {dim} is not divisible into {parts} equal parts")
    chunk = -(-dim // parts)
    return [min(chunk, max(dim - i * chunk, 0)) for i in range(parts)]


def _split_by(ctx, input, axis, sizes):
    axis = norm_axis(axis, input.ndim)
    if not sizes:
        sizes = _equal_sizes(input.shape[axis], ctx.num_outputs, False)
    return _split(input, axis, sizes)


@kernel("Split", since=1, types={"T": FLOAT}, host_inputs=(1,))
def Split_1(ctx, input, split_input=None, *, axis=0, **attrs):
    """Split along `axis` by the `split` attribute or the second input, else equally."""
    # opset 1 names both an input and an attribute `split`; the attribute comes in **attrs
    sizes = host_ints(split_input) if split_input is not None else list(attrs.get("split") or [])
    return _split_by(ctx, input, axis, sizes)


@kernel("Split", since=(2, 11), types={"T": CUPY | STRING})
def Split_2(ctx, input, *, split=None, axis=0):
    """Split along `axis` by the `split` attribute, else into equal parts."""
    return _split_by(ctx, input, axis, list(split or []))


@kernel("Split", since=13, types={"T": STANDARD}, host_inputs=(1,))
def Split_13(ctx, input, split=None, *, axis=0):
    """Split along `axis` by the `split` input, else into equal parts."""
    return _split_by(ctx, input, axis, host_ints(split))


@kernel("Split", since=18, types={"T": STANDARD}, host_inputs=(1,))
def Split(ctx, input, split=None, *, axis=0, num_outputs=None):
    """Split by the `split` input, else into num_outputs parts (the last may be smaller)."""
    axis_ = norm_axis(axis, input.ndim)
    if split is not None and split.size:
        return _split(input, axis_, host_ints(split))
    parts = num_outputs if num_outputs is not None else ctx.num_outputs
    return _split(input, axis_, _equal_sizes(input.shape[axis_], parts, True))


def _slice_index(shape, starts, ends, axes, steps):
    """A tuple of Python slices implementing ONNX Slice's clamping rules."""
    rank = len(shape)
    if axes is None or len(axes) == 0:
        axes = list(range(len(starts)))
    if steps is None or len(steps) == 0:
        steps = [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ValueError("Slice: starts, ends, axes and steps must have equal lengths")
    index = [slice(None)] * rank
    seen = set()
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = norm_axis(a, rank, "Slice axis")
        if a in seen:
            raise ValueError(f"Slice: axis {a} repeated")
        seen.add(a)
        if st == 0:
            raise ValueError("Slice: step cannot be 0")
        dim = shape[a]
        if s < 0:
            s += dim
        if e < 0:
            e += dim
        if st > 0:
            s = min(max(s, 0), dim)
            e = min(max(e, 0), dim)
            index[a] = slice(s, e, st)
        else:
            s = min(max(s, 0), dim - 1)  # the spec clamps a backward start to [0, dim - 1]
            e = min(max(e, -1), dim - 1)
            # Python reads a negative stop as counting from the end; -1 here means "past 0"
            index[a] = slice(s, e if e >= 0 else None, st) if s >= 0 else slice(0, 0)
    return tuple(index)


def _one_element(a) -> int | None:
    """The value of a one-element host integer tensor, else None."""
    if type(a) is np.ndarray and a.size == 1 and a.dtype.kind in "iu":
        return int(a.item())
    return None


def _one_axis_slice(shape, starts, ends, axes, steps):
    """The index of a Slice of one axis with a positive step (the usual case: every input one
    element), clamped as _slice_index clamps it; None for anything else (the general path)."""
    s, e = _one_element(starts), _one_element(ends)
    if s is None or e is None:
        return None
    a = 0 if axes is None else _one_element(axes)
    st = 1 if steps is None else _one_element(steps)
    rank = len(shape)
    if a is None or st is None or st <= 0 or not -rank <= a < rank:
        return None
    if a < 0:
        a += rank
    dim = shape[a]
    if s < 0:
        s += dim
    if e < 0:
        e += dim
    s = min(max(s, 0), dim)
    e = min(max(e, 0), dim)
    return (slice(None),) * a + (slice(s, e, st),)


@kernel("Slice", since=1, types={"T": CUPY | STRING})
def Slice_1(ctx, data, *, starts, ends, axes=None):
    """Slice with the starts/ends/axes attributes (step 1)."""
    return data[_slice_index(data.shape, list(starts), list(ends), axes, None)]


@kernel("Slice", since=(10, 11, 13), types={"T": STANDARD, "Tind": INDEX}, host_inputs=(1, 2, 3, 4))
def Slice(ctx, data, starts, ends, axes=None, steps=None):
    """Slice with starts/ends/axes/steps inputs; out-of-range bounds clamp, steps may be negative."""
    index = _one_axis_slice(data.shape, starts, ends, axes, steps)
    if index is not None:
        return data[index]
    index = _slice_index(data.shape, host_ints(starts), host_ints(ends),
                         host_ints(axes) if axes is not None else None,
                         host_ints(steps) if steps is not None else None)
    return data[index]
