"""Tensor sequences: a sequence value is a Python ``list`` of arrays (never mutated in place)."""
from ortgpu.providers.dtype_sets import CUPY, INDEX, STANDARD, STRING
from ortgpu.providers.registry import kernel


def _position(seq, position, default, allow_end):
    """Normalize a sequence position (a scalar tensor or None) to a non-negative index."""
    n = len(seq)
    if position is None:
        return default
    p = int(position.reshape(()) if hasattr(position, "reshape") else position)
    hi = n if allow_end else n - 1
    if not -n <= p <= hi:
        raise IndexError(f"sequence position {p} is out of range [{-n}, {hi}] for a sequence of {n} tensors")
    return p + n if p < 0 else p


@kernel("SequenceEmpty", since=11, types={"S": CUPY | STRING})
def SequenceEmpty(ctx, *, dtype=1):
    """An empty sequence (the element type only matters to type inference)."""
    return []


@kernel("SequenceConstruct", since=11, types={"T": CUPY | STRING, "S": CUPY | STRING})
def SequenceConstruct(ctx, *inputs):
    """A sequence of the given tensors, in order."""
    return list(inputs)


@kernel("SequenceInsert", since=11, types={"T": CUPY | STRING, "S": CUPY | STRING, "I": INDEX},
        host_inputs=(2,))
def SequenceInsert(ctx, input_sequence, tensor, position=None):
    """A new sequence with `tensor` inserted before `position` (default: appended)."""
    seq = list(input_sequence)
    seq.insert(_position(seq, position, len(seq), allow_end=True), tensor)
    return seq


@kernel("SequenceAt", since=11, types={"S": CUPY | STRING, "T": CUPY | STRING, "I": INDEX}, host_inputs=(1,))
def SequenceAt(ctx, input_sequence, position):
    """The tensor at `position` (negative counts from the back)."""
    return input_sequence[_position(input_sequence, position, 0, allow_end=False)]


@kernel("SequenceErase", since=11, types={"S": CUPY | STRING, "I": INDEX}, host_inputs=(1,))
def SequenceErase(ctx, input_sequence, position=None):
    """A new sequence without the tensor at `position` (default: the last one)."""
    seq = list(input_sequence)
    if not seq:
        raise IndexError("SequenceErase on an empty sequence")
    del seq[_position(seq, position, len(seq) - 1, allow_end=False)]
    return seq


@kernel("SequenceLength", since=11, types={"S": CUPY | STRING, "I": frozenset({"int64"})})
def SequenceLength(ctx, input_sequence):
    """The number of tensors in the sequence, as an int64 scalar."""
    return ctx.xp.asarray(len(input_sequence), dtype=ctx.xp.int64)


@kernel("SplitToSequence", since=(11, 24), types={"T": STANDARD, "I": INDEX, "S": STANDARD}, host_inputs=(1,))
def SplitToSequence(ctx, input, split=None, *, axis=0, keepdims=1):
    """Split along `axis` into a sequence; `keepdims` only applies when `split` is absent."""
    xp = ctx.xp
    r = input.ndim
    if not -r <= axis < r:
        raise ValueError(f"axis {axis} is out of range for a tensor of rank {r}")
    axis %= r
    length = input.shape[axis]
    if split is None:
        parts = [xp.take(input, i, axis=axis) for i in range(length)]
        if keepdims:
            parts = [xp.expand_dims(p, axis) for p in parts]
        return parts
    sizes = [int(s) for s in split.reshape(-1).tolist()]
    if split.ndim == 0:
        chunk = sizes[0]
        if chunk <= 0:
            raise ValueError(f"split must be positive, got {chunk}")
        sizes = [chunk] * (length // chunk) + ([length % chunk] if length % chunk else [])
    elif sum(sizes) != length or any(s < 0 for s in sizes):
        raise ValueError(f"split {sizes} does not sum to the dimension {length} of axis {axis}")
    bounds = [0]
    for s in sizes:
        bounds.append(bounds[-1] + s)
    index = [slice(None)] * r
    parts = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        index[axis] = slice(lo, hi)
        parts.append(input[tuple(index)])
    return parts


@kernel("ConcatFromSequence", since=11, types={"S": CUPY | STRING, "T": CUPY | STRING})
def ConcatFromSequence(ctx, input_sequence, *, axis, new_axis=0):
    """Concatenate the tensors along `axis`, or stack them on a new axis when `new_axis` is 1."""
    xp = ctx.xp
    if not input_sequence:
        raise ValueError("ConcatFromSequence needs a non-empty sequence")
    r = input_sequence[0].ndim + (1 if new_axis else 0)
    if not -r <= axis < r:
        raise ValueError(f"axis {axis} is out of range for rank {r}")
    if new_axis:
        return xp.stack(input_sequence, axis=axis)
    return xp.concatenate(input_sequence, axis=axis)
