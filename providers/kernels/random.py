"""Random ops: RandomUniform(Like), RandomNormal(Like), Multinomial, Bernoulli, and Dropout.

A `seed` attribute seeds a fresh generator per call (so a seeded node repeats itself);
without one the seed comes from ``set_seed`` (ortgpu.random_seed): the same sequence of draws
after each ``set_seed(n)``, fresh draws when it was never called.  NumPy's generator is not onnxruntime's, so
the values never match onnxruntime's bit for bit: only dtype, shape and distribution do.
"""
from __future__ import annotations

import numpy as np

from ortgpu.dtypes import np_dtype
from ortgpu.providers.kernels.normalization import softmax
from ortgpu.providers.kernels.reduce import float_work_dtype
from ortgpu.providers.dtype_sets import BOOL, FLOAT, FLOAT8, FLOATS, INDEX, NUMERIC, STANDARD
from ortgpu.providers.registry import kernel
from ortgpu.random_seed import next_seed


def _rng(xp, seed):
    """A generator for one call: the node's seed attribute, else the process seed (set_seed)."""
    if seed is None:
        seed = next_seed()
    return xp.random.default_rng(None if seed is None else int(seed))


def _uniform(xp, rng, shape, dtype):
    """Uniform [0, 1) draws in float64 (float32 when that is the target) to be cast to dtype."""
    work = np.float32 if np.dtype(dtype) == np.float32 else np.float64
    return rng.random(tuple(int(d) for d in shape), dtype=work)


def _out_dtype(dtype, default):
    return np_dtype(int(dtype)) if dtype is not None else np.dtype(default)


@kernel("RandomUniform", since=(1, 22), types={"T": FLOATS})
def RandomUniform(ctx, *, shape, dtype=1, high=1.0, low=0.0, seed=None):
    """Uniform samples in [low, high) of the given shape and dtype (default float)."""
    xp = ctx.xp
    dt = _out_dtype(dtype, np.float32)
    u = _uniform(xp, _rng(xp, seed), shape, dt)
    return (u * (high - low) + low).astype(dt)


@kernel("RandomNormal", since=(1, 22), types={"T": FLOATS})
def RandomNormal(ctx, *, shape, dtype=1, mean=0.0, scale=1.0, seed=None):
    """Normal samples N(mean, scale^2) of the given shape and dtype (default float)."""
    xp = ctx.xp
    dt = _out_dtype(dtype, np.float32)
    z = _rng(xp, seed).standard_normal(tuple(int(d) for d in shape))
    return (z * scale + mean).astype(dt)


@kernel("RandomUniformLike", since=(1, 22), types={"T1": STANDARD, "T2": FLOATS})
def RandomUniformLike(ctx, input, *, dtype=None, high=1.0, low=0.0, seed=None):
    """Uniform samples in [low, high) shaped like `input`, of `dtype` or the input's type."""
    xp = ctx.xp
    dt = _out_dtype(dtype, input.dtype)
    u = _uniform(xp, _rng(xp, seed), input.shape, dt)
    return (u * (high - low) + low).astype(dt)


@kernel("RandomNormalLike", since=(1, 22), types={"T1": STANDARD, "T2": FLOATS})
def RandomNormalLike(ctx, input, *, dtype=None, mean=0.0, scale=1.0, seed=None):
    """Normal samples N(mean, scale^2) shaped like `input`, of `dtype` or the input's type."""
    xp = ctx.xp
    dt = _out_dtype(dtype, input.dtype)
    z = _rng(xp, seed).standard_normal(input.shape)
    return (z * scale + mean).astype(dt)


@kernel("Multinomial", since=(7, 22), types={"T1": FLOATS, "T2": INDEX})
def Multinomial(ctx, input, *, dtype=6, sample_size=1, seed=None):
    """`sample_size` class indices per batch row, drawn from softmax(input) (unnormalized log-probs)."""
    xp = ctx.xp
    logits = input.astype(np.float64)
    probs = softmax(xp, logits, (1,))
    cdf = xp.cumsum(probs, axis=1)
    u = _rng(xp, seed).random((input.shape[0], int(sample_size)))
    # the sample is the first class whose cumulative probability exceeds u
    idx = xp.sum(cdf[:, None, :] <= u[:, :, None], axis=2)
    idx = xp.minimum(idx, input.shape[1] - 1)
    return idx.astype(_out_dtype(dtype, np.int32))


@kernel("Bernoulli", since=(15, 22), types={"T1": FLOATS, "T2": NUMERIC | BOOL})
def Bernoulli(ctx, input, *, dtype=None, seed=None):
    """1 with probability input[i], else 0, in `dtype` (default: the input's type)."""
    xp = ctx.xp
    u = _rng(xp, seed).random(input.shape)
    return (u < input.astype(np.float64)).astype(_out_dtype(dtype, input.dtype))


def _drop(xp, data, ratio, seed):
    """Training-mode dropout: zero elements with probability `ratio`, scale the rest by 1/(1-ratio)."""
    wdt = float_work_dtype(data.dtype)
    if ratio <= 0:
        return data, xp.ones(data.shape, dtype=bool)
    keep = _rng(xp, seed).random(data.shape) >= ratio
    scale = wdt.type(1.0 / (1.0 - ratio)) if ratio < 1 else wdt.type(0)
    out = xp.where(keep, data.astype(wdt) * scale, wdt.type(0)).astype(data.dtype)
    return out, keep


@kernel("Dropout", since=(1, 6, 7, 10), types={"T": FLOAT, "T1": BOOL})
def Dropout_ratio_attribute(ctx, data, *, ratio=0.5, is_test=None, consumed_inputs=None):
    """Identity with an all-true mask at inference; opsets 1 and 6 drop at random when is_test=0.
    The mask is bool from opset 10, of the data's type before."""
    xp = ctx.xp
    mask_dtype = bool if ctx.opset >= 10 else data.dtype
    if ctx.opset < 7 and not is_test:
        out, keep = _drop(xp, data, float(ratio), None)
    else:
        out, keep = data, None
    if ctx.num_outputs < 2:
        return out
    mask = xp.ones(data.shape, dtype=mask_dtype) if keep is None else keep.astype(mask_dtype)
    return out, mask


@kernel("Dropout", since=(12, 13, 22),
        types={"T": FLOATS | FLOAT8, "T1": FLOATS | FLOAT8, "T2": BOOL}, host_inputs=(1, 2))
def Dropout(ctx, data, ratio=None, training_mode=None, *, seed=None):
    """Identity unless training_mode is true; then zero with probability `ratio` (default 0.5)
    and scale the kept values by 1/(1-ratio).  The mask output is bool."""
    xp = ctx.xp
    training = training_mode is not None and bool(np.asarray(training_mode).reshape(-1)[0])
    if training:
        r = 0.5 if ratio is None else float(np.asarray(ratio).reshape(-1)[0])
        out, keep = _drop(xp, data, r, seed)
    else:
        out, keep = data, None
    if ctx.num_outputs < 2:
        return out
    return out, (xp.ones(data.shape, dtype=bool) if keep is None else keep)
