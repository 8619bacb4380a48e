"""Ops that copy one tensor into a new layout: broadcast, tile, pad, crop, block moves, triangles."""
import numpy as np

from ortgpu.providers.kernels.shape_ops import host_ints, host_scalar, norm_axis
from ortgpu.providers.dtype_sets import ALL, CUPY, FLOAT, FLOAT6, INDEX, STANDARD, STRING
from ortgpu.providers.registry import kernel


@kernel("Expand", since=(8, 13), types={"T": STANDARD}, host_inputs=(1,))
def Expand(ctx, input, shape):
    """Broadcast `input` against `shape` (bidirectionally: either side may be 1)."""
    xp = ctx.xp
    target = host_ints(shape)
    out_shape = np.broadcast_shapes(tuple(input.shape), tuple(target))
    if out_shape == tuple(input.shape):
        return input
    if input.dtype == object:
        return np.broadcast_to(input, out_shape).copy()
    # a real copy: a broadcast view is read-only and would leak stride-0 arrays to users
    return xp.ascontiguousarray(xp.broadcast_to(input, out_shape))


@kernel("Tile", since=1, types={"T": FLOAT, "T1": frozenset({"int64"})}, host_inputs=(1, 2))
def Tile_1(ctx, input, tiles, axis):
    """Repeat `input` `tiles` times along `axis` (both given as scalar inputs)."""
    ax = norm_axis(int(host_scalar(axis)), input.ndim)
    reps = [1] * input.ndim
    reps[ax] = int(host_scalar(tiles))
    return _tile(ctx.xp, input, reps)


@kernel("Tile", since=(6, 13), types={"T": STANDARD, "T1": frozenset({"int64"})}, host_inputs=(1,))
def Tile(ctx, input, repeats):
    """Repeat `input` repeats[i] times along each axis i."""
    reps = host_ints(repeats)
    if len(reps) != input.ndim:
        raise ValueError(f"Tile: repeats has {len(reps)} entries for a rank-{input.ndim} input")
    return _tile(ctx.xp, input, reps)


def _tile(xp, x, reps):
    if x.dtype == object:
        return np.tile(x, reps)
    return xp.tile(x, reps)


# --- Pad -------------------------------------------------------------------------------


def _pad(xp, data, pads, axes, mode, value):
    """Pad (negative amounts crop) `data`; pads = begins of `axes` then their ends."""
    rank = data.ndim
    axes = list(range(rank)) if axes is None else [norm_axis(a, rank, "Pad axis") for a in axes]
    if len(pads) != 2 * len(axes):
        raise ValueError(f"Pad: {len(pads)} pads for {len(axes)} axes (need twice as many)")
    begin, end = [0] * rank, [0] * rank
    for i, a in enumerate(axes):
        begin[a], end[a] = pads[i], pads[len(axes) + i]
    if any(b < 0 or e < 0 for b, e in zip(begin, end)):  # crop first
        data = data[tuple(slice(max(-b, 0), d - max(-e, 0)) for b, e, d in zip(begin, end, data.shape))]
        begin = [max(b, 0) for b in begin]
        end = [max(e, 0) for e in end]
    if not any(begin) and not any(end):
        return data
    if mode == "constant":
        out_shape = tuple(d + b + e for d, b, e in zip(data.shape, begin, end))
        mod = np if data.dtype == object else xp
        out = mod.empty(out_shape, dtype=data.dtype)
        out[...] = value
        out[tuple(slice(b, b + d) for b, d in zip(begin, data.shape))] = data
        return out
    if mode not in ("reflect", "edge", "wrap"):
        raise ValueError(f"Pad: unknown mode '{mode}'")
    if data.size == 0:
        raise ValueError(f"Pad: mode '{mode}' cannot pad an empty tensor")
    if mode == "reflect":
        for a, (b, e, d) in enumerate(zip(begin, end, data.shape)):
            if max(b, e) > d - 1:
                raise ValueError(f"Pad reflect: pad {max(b, e)} exceeds {d - 1} for axis {a} "
                                 f"of shape {tuple(data.shape)}")
    padded = [a for a in range(rank) if begin[a] or end[a]]
    if xp is np and len(padded) == 1:
        out = _pad_one_axis(data, padded[0], begin[padded[0]], end[padded[0]], mode)
        if out is not None:
            return out
    return xp.pad(data, list(zip(begin, end)), mode=mode)


def _pad_one_axis(data, a: int, b: int, e: int, mode: str):
    """`data` padded by b before and e after along axis `a` alone, in mode reflect, edge or
    wrap, as np.pad pads it: one concatenation of two slices around the data, rather than
    np.pad's general machinery (tens of us on a short signal).  None for a wrap longer than
    the axis (np.pad repeats the data then)."""
    d = data.shape[a]
    lead = (slice(None),) * a

    def part(sl):
        return data[lead + (sl,)]
    if mode == "reflect":  # mirrored about the first and last element, which are not repeated
        before, after = part(slice(b, 0, -1)), part(slice(d - 2, d - 2 - e if d - 2 - e >= 0 else None, -1))
    elif mode == "edge":
        before, after = np.repeat(part(slice(0, 1)), b, axis=a), np.repeat(part(slice(d - 1, d)), e, axis=a)
    elif b <= d and e <= d:  # wrap
        before, after = part(slice(d - b, d)), part(slice(0, e))
    else:
        return None
    return np.concatenate((before, data, after), axis=a)


def _fill_value(data, value):
    if value is None:
        return "" if data.dtype == object else 0
    v = value.reshape(-1)[0] if hasattr(value, "reshape") else value
    return v if data.dtype == object else v.item() if hasattr(v, "item") else v


@kernel("Pad", since=1, types={"T": FLOAT})
def Pad_1(ctx, data, *, paddings, mode="constant", value=0.0):
    """Pad by the `paddings` attribute with modes constant/reflect/edge."""
    return _pad(ctx.xp, data, list(paddings), None, mode, value)


@kernel("Pad", since=2, types={"T": FLOAT})
def Pad_2(ctx, data, *, pads, mode="constant", value=0.0):
    """Pad by the `pads` attribute (negative pads crop)."""
    return _pad(ctx.xp, data, list(pads), None, mode, value)


@kernel("Pad", since=(11, 13), types={"T": STANDARD}, host_inputs=(1,))
def Pad_11(ctx, data, pads, constant_value=None, *, mode="constant"):
    """Pad by the `pads` input, filling with `constant_value` (0) in constant mode."""
    return _pad(ctx.xp, data, host_ints(pads), None, mode, _fill_value(data, constant_value))


@kernel("Pad", since=(18, 19, 21, 23, 24, 25), types={"T": ALL - FLOAT6, "Tind": INDEX}, host_inputs=(1, 3))
def Pad(ctx, data, pads, constant_value=None, axes=None, *, mode="constant"):
    """Pad the `axes` (all by default) by `pads`; modes constant/reflect/edge/wrap."""
    return _pad(ctx.xp, data, host_ints(pads), host_ints(axes) if axes is not None else None,
                mode, _fill_value(data, constant_value))


@kernel("CenterCropPad", since=18, types={"T": STANDARD, "Tind": INDEX}, host_inputs=(1,))
def CenterCropPad(ctx, input_data, shape, *, axes=None):
    """Crop or zero-pad each of `axes` to `shape`, centred (the odd element goes to the end)."""
    xp = ctx.xp
    rank = input_data.ndim
    axes = list(range(rank)) if axes is None else [norm_axis(a, rank) for a in axes]
    target = host_ints(shape)
    if len(target) != len(axes):
        raise ValueError(f"CenterCropPad: shape has {len(target)} entries for {len(axes)} axes")
    out_shape = list(input_data.shape)
    src = [slice(None)] * rank
    dst = [slice(None)] * rank
    for a, t in zip(axes, target):
        d = input_data.shape[a]
        out_shape[a] = t
        if t < d:
            off = (d - t) // 2
            src[a] = slice(off, off + t)
        elif t > d:
            off = (t - d) // 2
            dst[a] = slice(off, off + d)
    out = xp.zeros(tuple(out_shape), dtype=input_data.dtype)
    out[tuple(dst)] = input_data[tuple(src)]
    return out


# --- block rearrangements and triangles ------------------------------------------------


@kernel("DepthToSpace", since=1, types={"T": CUPY | STRING})
def DepthToSpace_1(ctx, input, *, blocksize):
    """Move channel blocks into blocksize x blocksize spatial tiles (DCR order)."""
    return _depth_to_space(ctx.xp, input, blocksize, "DCR")


@kernel("DepthToSpace", since=(11, 13, 28), types={"T": STANDARD})
def DepthToSpace(ctx, input, *, blocksize, mode="DCR"):
    """Move channel blocks into spatial tiles; DCR = depth-column-row, CRD = column-row-depth."""
    return _depth_to_space(ctx.xp, input, blocksize, mode)


def _depth_to_space(xp, x, bs, mode):
    b, c, h, w = x.shape
    if c % (bs * bs):
        raise ValueError(f"DepthToSpace: {c} channels are not divisible by blocksize^2 = {bs * bs}")
    oc = c // (bs * bs)
    if mode == "DCR":
        t = xp.transpose(xp.reshape(x, (b, bs, bs, oc, h, w)), (0, 3, 4, 1, 5, 2))
    elif mode == "CRD":
        t = xp.transpose(xp.reshape(x, (b, oc, bs, bs, h, w)), (0, 1, 4, 2, 5, 3))
    else:
        raise ValueError(f"DepthToSpace: unknown mode '{mode}'")
    return xp.reshape(t, (b, oc, h * bs, w * bs))


@kernel("SpaceToDepth", since=(1, 13), types={"T": STANDARD})
def SpaceToDepth_1(ctx, input, *, blocksize):
    """Move blocksize x blocksize spatial tiles into channels (DCR order)."""
    return _space_to_depth(ctx.xp, input, blocksize, "DCR")


@kernel("SpaceToDepth", since=28, types={"T": STANDARD})
def SpaceToDepth(ctx, input, *, blocksize, mode="DCR"):
    """Move spatial tiles into channels; DCR puts the block offset first, CRD the channel."""
    return _space_to_depth(ctx.xp, input, blocksize, mode)


def _space_to_depth(xp, x, bs, mode):
    b, c, h, w = x.shape
    if h % bs or w % bs:
        raise ValueError(f"SpaceToDepth: spatial dims {h}x{w} are not divisible by blocksize {bs}")
    t = xp.reshape(x, (b, c, h // bs, bs, w // bs, bs))
    if mode == "DCR":
        t = xp.transpose(t, (0, 3, 5, 1, 2, 4))
    elif mode == "CRD":
        t = xp.transpose(t, (0, 1, 3, 5, 2, 4))
    else:
        raise ValueError(f"SpaceToDepth: unknown mode '{mode}'")
    return xp.reshape(t, (b, c * bs * bs, h // bs, w // bs))


@kernel("Trilu", since=14, types={"T": STANDARD}, host_inputs=(1,))
def Trilu(ctx, input, k=None, *, upper=1):
    """Keep the upper (or lower) triangle of the last two dims from diagonal k; zero the rest."""
    xp = ctx.xp
    kk = int(host_scalar(k)) if k is not None else 0
    rows, cols = input.shape[-2:]
    keep = xp.arange(cols)[None, :] - xp.arange(rows)[:, None]
    mask = keep >= kk if upper else keep <= kk
    zero = xp.zeros((), dtype=input.dtype)
    return xp.where(mask, input, zero)
