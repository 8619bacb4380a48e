"""Raw CUDA launchers for SkipLayerNormalization and SkipSimplifiedLayerNormalization
(com.microsoft; source: contrib_layernorm.cu).

The kernel takes float32/float16 input of 2 or 3 dims with skip of the same shape or
broadcast over the batch, and gamma/beta/bias of shape (hidden,) in the input's type; the
outputs are Y, the mean (zeros for the simplified form), the inverse standard deviation and
the sum input + skip (+ bias), as ``providers/kernels/contrib_normalization.py``, whose formula
the kernel follows and which handles every other case (and raises the shape errors).

Never run on a GPU: written and checked on the host emulator without a device.
"""
from __future__ import annotations

import math

import numpy as np

from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.dtype_sets import FLOAT
from ortgpu.providers.kernels import contrib_normalization as shared
from ortgpu.providers.kernels.reduce import float_work_dtype
from ortgpu.providers.registry import kernel

SOURCE = "contrib_layernorm.cu"


UNITS = cu.declare_templates(SOURCE, "skip_layernorm_rows")


def _skip_rows(input, skip) -> int | None:
    """Rows of skip the kernel cycles through, or None when skip's shape is not one it reads."""
    if skip.shape == input.shape:
        return math.prod(input.shape[:-1])
    if input.ndim == 3 and skip.shape in (input.shape[1:], (1,) + input.shape[1:]):
        return input.shape[1]
    return None


def _params_ok(dt, hidden, *params) -> bool:
    return all(p is None or (p.dtype == dt and tuple(p.shape) == (hidden,)) for p in params)


def run_skip_layernorm(ctx, input, skip, gamma, beta, bias, epsilon, simplified):
    """The outputs list (Y, mean, inv, sum as many as asked) computed on the GPU, or None
    when the inputs are not a case the kernel handles."""
    dt = input.dtype
    if dt not in UNITS or input.ndim not in (2, 3) or skip.dtype != dt:
        return None
    hidden = input.shape[-1]
    skip_rows = _skip_rows(input, skip)
    rows = math.prod(input.shape[:-1])
    if skip_rows is None or rows == 0 or hidden == 0 or not _params_ok(dt, hidden, gamma, beta, bias):
        return None
    import cupy

    cdt = float_work_dtype(dt)
    n_out = ctx.num_outputs
    x = cupy.ascontiguousarray(input)
    sk = cupy.ascontiguousarray(skip)
    y = cupy.empty(x.shape, dtype=dt)
    stat_shape = input.shape[:-1] + (1,)
    mean = cupy.zeros(stat_shape, dtype=cdt) if n_out > 1 else None
    inv = cupy.empty(stat_shape, dtype=cdt) if n_out > 2 else None
    total = cupy.empty(x.shape, dtype=dt) if n_out > 3 else None
    opt = [None if p is None else cupy.ascontiguousarray(p) for p in (beta, bias)]
    fn = cu.template_function(UNITS, dt, "skip_layernorm_rows")
    grid, block = cu.row_launch_config(rows, hidden)
    fn(grid, block, (x, sk, cupy.ascontiguousarray(gamma), opt[0], opt[1], y, mean, inv, total,
                     np.int64(rows), np.int64(hidden), np.int64(skip_rows), np.int32(bool(simplified)),
                     cu.compute_scalar(dt, epsilon)))
    outs = [y]
    for i, stat in ((1, mean), (2, inv)):
        if stat is not None:
            outs.append(stat.astype(shared._stat_dtype(ctx, i, np.dtype(np.float32)), copy=False))
    if total is not None:
        outs.append(total)
    return outs


def _finish(outs):
    return outs[0] if len(outs) == 1 else tuple(outs)


@kernel("SkipLayerNormalization", since=1, domain=cu.MS_DOMAIN, provider="cuda", types={"*": FLOAT},
        host_inputs=(), capturable=True)
def SkipLayerNormalization(ctx, input, skip, gamma, beta=None, bias=None, *, epsilon=1e-12):
    """LayerNormalization of input + skip (+ bias) over the hidden axis (raw CUDA)."""
    if cu.on_device(ctx, input, skip, gamma, beta, bias):
        outs = run_skip_layernorm(ctx, input, skip, gamma, beta, bias, epsilon, False)
        if outs is not None:
            return _finish(outs)
    return shared.SkipLayerNormalization(ctx, input, skip, gamma, beta, bias, epsilon=epsilon)


@kernel("SkipSimplifiedLayerNormalization", since=1, domain=cu.MS_DOMAIN, provider="cuda", types={"*": FLOAT},
        host_inputs=(), capturable=True)
def SkipSimplifiedLayerNormalization(ctx, input, skip, gamma, bias=None, *, epsilon=1e-12):
    """RMS normalization of input + skip (+ bias) over the hidden axis (raw CUDA)."""
    if cu.on_device(ctx, input, skip, gamma, bias):
        outs = run_skip_layernorm(ctx, input, skip, gamma, None, bias, epsilon, True)
        if outs is not None:
            return _finish(outs)
    return shared.SkipSimplifiedLayerNormalization(ctx, input, skip, gamma, bias, epsilon=epsilon)
