"""Raw CUDA launcher for RotaryEmbedding (com.microsoft; source: contrib_rotary.cu).

The kernel takes float32/float16 input of shape (B, S, N*D) or (B, N, S, D), cos/sin caches
of the input's type with rotary_dim / 2 columns, and int64 position_ids of shape (B, S) or
one start offset.  Positions are checked against the cache rows on the host first (one
device-to-host read of their range), as ``providers/kernels/contrib_attention.py`` does, whose
formula the kernel follows and which handles every other case and raises the shape errors.

Never run on a GPU: written and checked on the host emulator without a device.
"""
from __future__ import annotations

import numpy as np

from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.dtype_sets import FLOAT
from ortgpu.providers.kernels import contrib_attention as shared
from ortgpu.providers.registry import HOST_ROUND_TRIP, kernel

SOURCE = "contrib_rotary.cu"


UNITS = cu.declare_templates(SOURCE, "rotary_embedding")


def _layout(input, num_heads, cos_cache):
    """(B, S, N, D) and the element strides of b, s, n in a contiguous input, or None."""
    if input.ndim == 4:
        b, n, s, d = input.shape
        return (b, s, n, d), (n * s * d, d, s * d)
    if input.ndim == 3:
        b, s, h = input.shape
        d = (h // num_heads) if num_heads else 2 * cos_cache.shape[1]
        if d <= 0 or h % d:
            return None
        n = h // d
        return (b, s, n, d), (s * h, h, d)
    return None


def _positions(xp, position_ids, b, s):
    """int64 (B, S) positions on the device from (B, S) ids or one start offset, or None."""
    if position_ids.dtype != np.int64:
        return None
    if position_ids.size == 1:
        return position_ids.reshape(1, 1) + xp.arange(s, dtype=xp.int64).reshape(1, s) + xp.zeros((b, 1), xp.int64)
    if tuple(position_ids.shape) != (b, s):
        return None
    return xp.ascontiguousarray(position_ids)


def run_rotary(input, position_ids, cos_cache, sin_cache, interleaved, num_heads, rotary_embedding_dim):
    """The rotated input on the GPU, or None when the kernel does not take these inputs."""
    dt = input.dtype
    if dt not in UNITS or cos_cache.dtype != dt or sin_cache.dtype != dt or input.size == 0:
        return None
    if cos_cache.ndim != 2 or sin_cache.shape != cos_cache.shape:
        return None
    layout = _layout(input, num_heads, cos_cache)
    if layout is None:
        return None
    (b, s, n, d), (sb, ss, sn) = layout
    half = cos_cache.shape[1]
    rd = rotary_embedding_dim or 2 * half
    if rd != 2 * half or rd > d:
        return None
    import cupy

    pos = _positions(cupy, position_ids, b, s)
    if pos is None:
        return None
    if bool((pos < 0).any()) or bool((pos >= cos_cache.shape[0]).any()):
        return None   # the shared kernel raises its error naming the positions
    x = cupy.ascontiguousarray(input)
    y = cupy.empty(x.shape, dtype=dt)
    fn = cu.template_function(UNITS, dt, "rotary_embedding")
    cu.launch_elementwise(fn, x.size, (x, pos, cupy.ascontiguousarray(cos_cache),
                                       cupy.ascontiguousarray(sin_cache), y, np.int64(b), np.int64(s),
                                       np.int64(n), np.int64(d), np.int64(sb), np.int64(ss), np.int64(sn),
                                       np.int64(rd), np.int32(bool(interleaved))))
    return y


@kernel("RotaryEmbedding", since=1, domain=cu.MS_DOMAIN, provider="cuda",
        types={"T": FLOAT, "M": frozenset({"int64"})}, host_inputs=(), capturable=HOST_ROUND_TRIP)
def RotaryEmbedding(ctx, input, position_ids, cos_cache, sin_cache, *, interleaved=0, num_heads=0,
                    rotary_embedding_dim=0, scale=1.0, is_packed_batching=0):
    """Rotary position embedding of (B, S, H) or (B, N, S, D) input (raw CUDA)."""
    y = None
    if cu.on_device(ctx, input, position_ids, cos_cache, sin_cache) and not is_packed_batching:
        y = run_rotary(input, position_ids, cos_cache, sin_cache, interleaved, num_heads,
                       rotary_embedding_dim)
    if y is None:
        return shared.RotaryEmbedding(ctx, input, position_ids, cos_cache, sin_cache, interleaved=interleaved,
                                      num_heads=num_heads, rotary_embedding_dim=rotary_embedding_dim,
                                      scale=scale, is_packed_batching=is_packed_batching)
    return y
