"""Normalizations of onnxruntime's contrib domain: SkipLayerNormalization,
SkipSimplifiedLayerNormalization, EmbedLayerNormalization, GroupNorm, SkipGroupNorm,
BiasSoftmax, GatedRMSNorm and BranchwiseRMSNorm (com.microsoft), and the LayerNormalization-1 /
SimplifiedLayerNormalization-1 that onnxruntime registers in the ai.onnx domain for models older
than opset 17.

Statistics run in float32 for float16 inputs (float64 stays float64), as onnxruntime's CPU
kernels compute them; the residual sum input + skip (+ bias) is computed in that precision too
and rounded once for the optional sum output.
"""
from __future__ import annotations

import numpy as np

from ortgpu.providers.cpu import half_compiled, norm_compiled
from ortgpu.providers.dtype_sets import FLOAT, INDEX
from ortgpu.providers.kernels import activations
from ortgpu.providers.kernels.normalization import softmax
from ortgpu.providers.kernels.reduce import float_work_dtype, normalize_axes
from ortgpu.providers.registry import declare_formals, kernel

MS = "com.microsoft"


def _as(x, dt):
    return x if x.dtype == dt else x.astype(dt)


def layer_norm(xp, x, axes, gamma, beta, epsilon, simplified=False):
    """(y, mean, inv_std) of x (already in its work dtype) over `axes`; simplified = RMS norm
    (no centering, mean returned as None).  Sums divided by the count rather than xp.mean
    (its Python wrapper costs about 10 us a call, the size of the whole kernel on a transformer's
    (4, 32, 32) block), and the scaling done in place on the one fresh array; x is not written."""
    wdt = x.dtype
    n = 1
    for a in axes:
        n *= x.shape[a]
    if simplified:
        mean = None
        d = x
    else:
        mean = xp.asarray(x.sum(axis=axes, keepdims=True))
        mean /= n
        d = x - mean
    sq = d * d
    var = xp.asarray(sq.sum(axis=axes, keepdims=True))
    var /= n
    var += wdt.type(epsilon)
    inv = xp.sqrt(var)
    inv = xp.asarray(wdt.type(1) / inv)
    y = d * inv if d is x else d
    if y is d:
        y *= inv
    y *= _as(gamma, wdt)
    if beta is not None:
        y += _as(beta, wdt)
    return y, mean, inv


def _stat_dtype(ctx, i, default):
    dt = ctx.output_dtype(i)
    return default if dt is None else dt


def _check_hidden(op, hidden, **params):
    for name, p in params.items():
        if p is not None and tuple(p.shape) != (hidden,):
            raise ValueError(f"{op}: input '{name}' must have shape ({hidden},) (the hidden size), "
                             f"got {tuple(p.shape)}")


def _check_skip(op, input, skip):
    """input is (B, S, H) or (N, H); skip is input's shape, (1, S, H) or (S, H)."""
    if input.ndim not in (2, 3):
        raise ValueError(f"{op}: input 'input' must be 2-D or 3-D, got shape {tuple(input.shape)}")
    if skip.shape != input.shape and skip.shape[-2:] != input.shape[-2:] or skip.ndim > input.ndim:
        raise ValueError(f"{op}: input 'skip' must have shape {tuple(input.shape)} or broadcast over "
                         f"the batch, got {tuple(skip.shape)}")


def _skip_sum(op, input, skip, bias):
    """input + skip (+ bias) in the work dtype; skip is (B, S, H), (1, S, H) or (S, H)."""
    _check_skip(op, input, skip)
    wdt = float_work_dtype(input.dtype)
    s = _as(input, wdt) + _as(skip, wdt)
    if bias is not None:
        s += _as(bias, wdt)   # s is fresh: add in place
    return s


def _skip_norm(ctx, op, input, skip, gamma, beta, bias, epsilon, simplified):
    xp = ctx.xp
    hidden = input.shape[-1]
    _check_hidden(op, hidden, gamma=gamma, beta=beta, bias=bias)
    if half_compiled.takes(xp, input, skip, gamma, beta, bias) and input.size:
        return _skip_norm_compiled(ctx, op, input, skip, gamma, beta, bias, epsilon, simplified)
    s = _skip_sum(op, input, skip, bias)
    y, mean, inv = layer_norm(xp, s, (-1,), gamma, beta, epsilon, simplified)
    return _skip_outputs(ctx, input.dtype, y, mean, inv, s)


def _skip_outputs(ctx, dtype, y, mean, inv, s):
    """The outputs asked for: y, mean (zeros for the RMS form), inverse deviation, the sum."""
    outs = [half_compiled.convert(y, dtype)]
    if ctx.num_outputs > 1:
        stat = _stat_dtype(ctx, 1, np.dtype(np.float32))
        outs.append(_as(ctx.xp.zeros_like(inv) if mean is None else mean, stat))
    if ctx.num_outputs > 2:
        outs.append(_as(inv, _stat_dtype(ctx, 2, np.dtype(np.float32))))
    if ctx.num_outputs > 3:
        outs.append(half_compiled.convert(s, dtype))
    return outs[0] if len(outs) == 1 else tuple(outs)


def _skip_norm_compiled(ctx, op, input, skip, gamma, beta, bias, epsilon, simplified):
    """_skip_norm by the compiled row kernels (norm_compiled), float16 widened and rounded once."""
    _check_skip(op, input, skip)
    hidden = input.shape[-1]
    w = half_compiled.widen
    if input.dtype == np.float16 and skip.dtype == np.float16:   # rows widened inside the body
        run, x, sk = norm_compiled.skip_layer_norm_half, input, skip
    else:
        run, x, sk = norm_compiled.skip_layer_norm, w(input), w(skip)
    y, mean, inv, s = run(x.reshape(-1, hidden), sk.reshape(-1, hidden), bias, gamma, beta, epsilon,
                          simplified, want_sum=ctx.num_outputs > 3)   # (float16 parameters: made float32 there)
    stat_shape = input.shape[:-1] + (1,)
    return _skip_outputs(ctx, input.dtype, y.reshape(input.shape), None if simplified else mean.reshape(stat_shape),
                         inv.reshape(stat_shape), None if s is None else s.reshape(input.shape))


@kernel("SkipLayerNormalization", since=1, domain=MS, types={"*": FLOAT})
def SkipLayerNormalization(ctx, input, skip, gamma, beta=None, bias=None, *, epsilon=1e-12):
    """LayerNormalization over the hidden axis of input + skip (+ bias); optional outputs: mean,
    inverse standard deviation, and the sum input + skip + bias."""
    return _skip_norm(ctx, "SkipLayerNormalization", input, skip, gamma, beta, bias, epsilon, False)


@kernel("SkipSimplifiedLayerNormalization", since=1, domain=MS, types={"*": FLOAT})
def SkipSimplifiedLayerNormalization(ctx, input, skip, gamma, bias=None, *, epsilon=1e-12):
    """RMS normalization (no centering, no beta) of input + skip (+ bias), outputs as
    SkipLayerNormalization's (the mean output is zero)."""
    return _skip_norm(ctx, "SkipSimplifiedLayerNormalization", input, skip, gamma, None, bias,
                      epsilon, True)


def _norm_outputs(ctx, X, y, mean, inv, stash_type):
    default = np.dtype(np.float32) if stash_type == 1 else X.dtype
    outs = [half_compiled.convert(y, X.dtype)]
    if mean is not None and ctx.num_outputs > 1:
        outs.append(_as(mean, _stat_dtype(ctx, 1, default)))
        if ctx.num_outputs > 2:
            outs.append(_as(inv, _stat_dtype(ctx, 2, default)))
    elif mean is None and ctx.num_outputs > 1:
        outs.append(_as(inv, _stat_dtype(ctx, 1, default)))
    return outs[0] if len(outs) == 1 else tuple(outs)


@kernel("LayerNormalization", since=1, types={"*": FLOAT})
def LayerNormalization_1(ctx, X, Scale, B=None, *, axis=-1, epsilon=1e-5, stash_type=1):
    """onnxruntime's LayerNormalization for opsets before 17 (ai.onnx domain): normalize over the
    axes from `axis` on; outputs Y, Mean, InvStdDev."""
    a = normalize_axes([axis], X.ndim)[0]
    if norm_compiled.compiled_rows(ctx.xp, X, a, Scale, B):
        y, mean, inv = norm_compiled.norm_rows(X, a, Scale, B, epsilon)
        return _norm_outputs(ctx, X, y, mean, inv, stash_type)
    x = _as(X, float_work_dtype(X.dtype))
    y, mean, inv = layer_norm(ctx.xp, x, tuple(range(a, X.ndim)), Scale, B, epsilon)
    return _norm_outputs(ctx, X, y, mean, inv, stash_type)


@kernel("SimplifiedLayerNormalization", since=1, types={"*": FLOAT})
def SimplifiedLayerNormalization(ctx, X, scale, *, axis=-1, epsilon=1e-5, stash_type=1):
    """RMS normalization over the axes from `axis` on (onnxruntime's, ai.onnx domain); outputs
    Y and InvStdDev."""
    a = normalize_axes([axis], X.ndim)[0]
    if norm_compiled.compiled_rows(ctx.xp, X, a, scale, None):
        y, _, inv = norm_compiled.norm_rows(X, a, scale, None, epsilon, simplified=True)
        return _norm_outputs(ctx, X, y, None, inv, stash_type)
    x = _as(X, float_work_dtype(X.dtype))
    y, _, inv = layer_norm(ctx.xp, x, tuple(range(a, X.ndim)), scale, None, epsilon, simplified=True)
    return _norm_outputs(ctx, X, y, None, inv, stash_type)


declare_formals(MS, "EmbedLayerNormalization", ("T1", "T1", "T", "T", "T", "T", "T", "T1", "T1"),
                ("T", "T1", "T"))


def _gather_rows(op, name, table, ids):
    bad = (ids < 0) | (ids >= table.shape[0])
    if bool(bad.any()):
        raise ValueError(f"{op}: input '{name}' holds indices outside [0, {table.shape[0]}), e.g. "
                         f"{int(ids[bad].ravel()[0])}")
    return table[ids]


@kernel("EmbedLayerNormalization", since=1, domain=MS, types={"T": FLOAT, "T1": INDEX})
def EmbedLayerNormalization(ctx, input_ids, segment_ids, word_embedding, position_embedding,
                            segment_embedding=None, gamma=None, beta=None, mask=None, position_ids=None,
                            *, epsilon=1e-12, mask_index_type=1):
    """LayerNorm(word[input_ids] + position[position_ids or 0..S-1] + segment[segment_ids]);
    second output: the number of unmasked tokens per row (mask_index); third: the sum itself."""
    xp = ctx.xp
    op = "EmbedLayerNormalization"
    if input_ids.ndim != 2:
        raise ValueError(f"{op}: input 'input_ids' must be (batch, sequence), got {tuple(input_ids.shape)}")
    if gamma is None:
        raise ValueError(f"{op}: input 'gamma' is required")
    b, s = input_ids.shape
    hidden = word_embedding.shape[1]
    _check_hidden(op, hidden, gamma=gamma, beta=beta)
    tables = (word_embedding, position_embedding, segment_embedding)
    if half_compiled.takes(xp, *tables, gamma, beta) and all(t is None or t.dtype == np.float32 for t in tables):
        if position_ids is None and s > position_embedding.shape[0]:
            raise ValueError(f"{op}: input 'position_ids' holds indices outside "
                             f"[0, {position_embedding.shape[0]}), e.g. {position_embedding.shape[0]}")
        y, e = norm_compiled.embed_layer_norm(
            op, input_ids, segment_ids, position_ids, word_embedding, position_embedding, segment_embedding,
            half_compiled.widen(gamma), half_compiled.widen(beta), epsilon, want_sum=ctx.num_outputs > 2)
        return _embed_outputs(ctx, xp, y, e, mask, mask_index_type, b)
    wdt = float_work_dtype(word_embedding.dtype)
    e = _as(_gather_rows(op, "input_ids", word_embedding, input_ids), wdt)   # fresh: add in place
    if position_ids is None:   # positions 0..S-1: the table's first S rows, broadcast over the batch
        if s > position_embedding.shape[0]:
            raise ValueError(f"{op}: input 'position_ids' holds indices outside "
                             f"[0, {position_embedding.shape[0]}), e.g. {position_embedding.shape[0]}")
        e += _as(position_embedding[:s], wdt)
    else:
        e += _as(_gather_rows(op, "position_ids", position_embedding, xp.broadcast_to(position_ids, (b, s))), wdt)
    if segment_embedding is not None and segment_ids is not None:
        e += _as(_gather_rows(op, "segment_ids", segment_embedding, segment_ids), wdt)
    y, _, _ = layer_norm(xp, e, (-1,), gamma, beta, epsilon)
    return _embed_outputs(ctx, xp, _as(y, word_embedding.dtype), _as(e, word_embedding.dtype), mask,
                          mask_index_type, b)


def _embed_outputs(ctx, xp, y, e, mask, mask_index_type, b):
    """EmbedLayerNormalization's outputs asked for: y, the mask index (unmasked tokens per row,
    zeros without a mask), the embedding sum."""
    outs = [y]
    if ctx.num_outputs > 1:
        if mask is not None and mask_index_type:
            outs.append((mask != 0).sum(axis=1).astype(np.int32))
        else:
            outs.append(xp.zeros((b,), dtype=np.int32))
    if ctx.num_outputs > 2:
        outs.append(e)
    return outs[0] if len(outs) == 1 else tuple(outs)


def _group_norm_nhwc(ctx, op, x, gamma, beta, epsilon, groups, activation, out_dtype):
    """GroupNorm of an NHWC array x (work dtype), per-channel gamma/beta, optional SiLU."""
    xp = ctx.xp
    n, c = x.shape[0], x.shape[-1]
    if groups <= 0 or c % groups:
        raise ValueError(f"{op}: {c} channels are not divisible into groups={groups}")
    _check_hidden(op, c, gamma=gamma, beta=beta)
    g = x.reshape(n, -1, groups, c // groups)
    mean = xp.mean(g, axis=(1, 3), keepdims=True)
    d = g - mean
    var = xp.mean(d * d, axis=(1, 3), keepdims=True)
    y = (d / xp.sqrt(var + x.dtype.type(epsilon))).reshape(x.shape)
    y = y * _as(gamma, x.dtype) + _as(beta, x.dtype)
    if activation == 1:
        y = y * activations._sigmoid(xp, y)
    elif activation != 0:
        raise ValueError(f"{op}: activation must be 0 (none) or 1 (SiLU), got {activation}")
    return _as(y, out_dtype)


def _check_nhwc(op, X, channels_last):
    if not channels_last:
        raise NotImplementedError(f"{op}: only channels_last=1 (NHWC) is supported, as in onnxruntime")
    if X.ndim != 4:
        raise ValueError(f"{op}: input 'X' must be 4-D (N, H, W, C), got shape {tuple(X.shape)}")


@kernel("GroupNorm", since=1, domain=MS, types={"*": FLOAT})
def GroupNorm(ctx, X, gamma, beta, *, activation, epsilon=1e-5, groups, channels_last=1):
    """Group normalization of an NHWC input with per-channel gamma/beta, then SiLU when
    activation=1 (Stable Diffusion's UNet)."""
    _check_nhwc("GroupNorm", X, channels_last)
    x = _as(X, float_work_dtype(X.dtype))
    return _group_norm_nhwc(ctx, "GroupNorm", x, gamma, beta, epsilon, groups, activation, X.dtype)


@kernel("SkipGroupNorm", since=1, domain=MS, types={"*": FLOAT})
def SkipGroupNorm(ctx, X, gamma, beta, skip, bias=None, *, activation, epsilon=1e-5, groups,
                  channels_last=1):
    """GroupNorm of X + skip (+ bias); skip is (N, H, W, C), (N, 1, 1, C) or (N, C); the second
    output is that sum."""
    op = "SkipGroupNorm"
    _check_nhwc(op, X, channels_last)
    n, c = X.shape[0], X.shape[-1]
    if skip.ndim == 2:
        skip = skip.reshape(n, 1, 1, c)
    if skip.ndim != 4 or skip.shape[0] != n or skip.shape[-1] != c or skip.shape[1:3] not in (
            X.shape[1:3], (1, 1)):
        raise ValueError(f"{op}: input 'skip' must be {tuple(X.shape)}, ({n}, 1, 1, {c}) or ({n}, {c}), "
                         f"got {tuple(skip.shape)}")
    wdt = float_work_dtype(X.dtype)
    s = _as(X, wdt) + _as(skip, wdt)
    if bias is not None:
        _check_hidden(op, c, bias=bias)
        s = s + _as(bias, wdt)
    y = _group_norm_nhwc(ctx, op, s, gamma, beta, epsilon, groups, activation, X.dtype)
    return (y, _as(s, X.dtype)) if ctx.num_outputs > 1 else y


@kernel("BiasSoftmax", since=1, domain=MS, types={"*": FLOAT})
def BiasSoftmax(ctx, data, bias, *, axis=1, is_inner_broadcast):
    """softmax(data + bias) over the axes from `axis` on.  A bias of lower rank lines up with
    data's trailing axes (is_inner_broadcast=0), or with its leading axes and the softmax axes,
    broadcast over the axes between (is_inner_broadcast=1, e.g. a (B, 1, 1, S) mask over heads)."""
    nd = data.ndim
    a = normalize_axes([axis], nd)[0]
    if bias.ndim < nd and is_inner_broadcast:
        lead = bias.ndim - (nd - a)
        if lead < 0 or tuple(bias.shape[lead:]) != tuple(data.shape[a:]):
            raise ValueError(f"BiasSoftmax: bias of shape {tuple(bias.shape)} does not line up with data "
                             f"{tuple(data.shape)} from axis {a}")
        bias = bias.reshape(bias.shape[:lead] + (1,) * (a - lead) + bias.shape[lead:])
    wdt = float_work_dtype(data.dtype)
    y = softmax(ctx.xp, _as(data, wdt) + _as(bias, wdt), tuple(range(a, nd)))
    return _as(y, data.dtype)


_T16 = frozenset({"float32", "float16", "bfloat16"})


def _rms(xp, x, epsilon):
    """x * rsqrt(mean(x^2) + epsilon) over the last axis, float32."""
    return x / xp.sqrt(xp.mean(x * x, axis=-1, keepdims=True) + np.float32(epsilon))


@kernel("GatedRMSNorm", since=1, domain=MS, types={"*": _T16})
def GatedRMSNorm(ctx, X, scale, gate, *, activation="silu", epsilon=1e-5):
    """RMS norm over each group of len(scale) trailing values, times scale and the activated gate
    (silu / swish or sigmoid), all in float32 (Mamba2 / gated DeltaNet outputs)."""
    xp = ctx.xp
    c = scale.size
    if X.ndim < 1 or c == 0 or X.shape[-1] % c:
        raise ValueError(f"GatedRMSNorm: the last axis of X {tuple(X.shape)} must be a multiple of the length "
                         f"of scale ({c})")
    if tuple(gate.shape) != tuple(X.shape):
        raise ValueError(f"GatedRMSNorm: input gate has shape {tuple(gate.shape)}, expected X's {tuple(X.shape)}")
    if activation not in ("silu", "swish", "sigmoid"):
        raise ValueError(f"GatedRMSNorm: activation must be silu, swish or sigmoid, got '{activation}'")
    x = X.astype(xp.float32).reshape(X.shape[:-1] + (X.shape[-1] // c, c))
    g = gate.astype(xp.float32).reshape(x.shape)
    act = activations._sigmoid(xp, g)
    if activation != "sigmoid":
        act = g * act
    y = _rms(xp, x, epsilon) * scale.astype(xp.float32).reshape(-1) * act
    return y.reshape(X.shape).astype(X.dtype)


declare_formals(MS, "BranchwiseRMSNorm", ("T", "M"), ("T",))


@kernel("BranchwiseRMSNorm", since=1, domain=MS, types={"T": _T16, "M": _T16})
def BranchwiseRMSNorm(ctx, X, scale=None, *, num_branches=0, epsilon=1e-5):
    """RMS norm of each branch: over the last axis H of X (..., C, H), or of each of the
    num_branches slices of a flattened last axis (..., C * H); scale (C*H), (C, H) or (H)."""
    xp = ctx.xp
    if num_branches:
        if X.shape[-1] % num_branches:
            raise ValueError(f"BranchwiseRMSNorm: the last axis of X {tuple(X.shape)} must be a multiple of "
                             f"num_branches={num_branches}")
        x = X.reshape(X.shape[:-1] + (num_branches, X.shape[-1] // num_branches))
    else:
        if X.ndim < 2:
            raise ValueError(f"BranchwiseRMSNorm: X {tuple(X.shape)} must be (..., C, H) without num_branches")
        x = X
    c, h = x.shape[-2:]
    y = _rms(xp, x.astype(xp.float32), epsilon)
    if scale is not None:
        if scale.size not in (c * h, h):
            raise ValueError(f"BranchwiseRMSNorm: input scale has shape {tuple(scale.shape)}, expected ({c * h}), "
                             f"({c}, {h}) or ({h})")
        y = y * scale.astype(xp.float32).reshape((c, h) if scale.size == c * h else (h,))
    return y.reshape(X.shape).astype(X.dtype)
