"""Raw CUDA launchers for MatMulNBits (com.microsoft; source: contrib_matmul_nbits.cu).

Batch 1 (A with one row): a dequantize-GEMV kernel reads the packed weight once, dequantizes
it in registers and sums in float32, so the weight is never written out in float.  More rows:
a kernel dequantizes the weight to float32 (N, K), then cuBLAS (CuPy's matmul) multiplies in
float32, as the shared kernel (``providers/kernels/contrib_quant_nbits.py``) computes.  Both take
float32/float16 A and scales, 2/4/8-bit weights, no zero points, packed uint8 zero points or
float zero points; act-order (g_idx), bfloat16 and every invalid input go to the shared
kernel, which raises the errors.

Never run on a GPU: written and checked on the host emulator without a device.
"""
from __future__ import annotations

import math

import numpy as np

from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.kernels import contrib_quant_nbits as shared
from ortgpu.providers.registry import kernel

SOURCE = "contrib_matmul_nbits.cu"


UNITS = cu.declare_templates(SOURCE, "nbits_gemv", "nbits_dequantize")


def _zero_points(zero_points, dt, n, k_blocks, bits):
    """(packed uint8 or None, float or None, bytes a row) or None when their shape is not
    one the kernels read."""
    if zero_points is None:
        return None, None, 0
    if zero_points.dtype == np.uint8:
        row = zero_points.size // n if n else 0
        if row * n != zero_points.size or row * 8 < k_blocks * bits:
            return None
        return zero_points, None, row
    if zero_points.dtype == dt and zero_points.size == n * k_blocks:
        return None, zero_points, 0
    return None


def _plan(A, B, scales, zero_points, g_idx, bias, K, N, bits, block_size, weight_prepacked):
    """The kernels' arguments after the packed operands, or None when they do not take them."""
    dt = A.dtype
    if dt not in UNITS or g_idx is not None or weight_prepacked or bits not in (2, 4, 8):
        return None
    if block_size < 16 or block_size & (block_size - 1) or A.ndim == 0 or A.shape[-1] != K or N <= 0 or K <= 0:
        return None
    k_blocks = -(-K // block_size)
    if B.dtype != np.uint8 or B.size != N * k_blocks * (block_size * bits // 8):
        return None
    if scales.dtype != dt or scales.size != N * k_blocks:
        return None
    if bias is not None and (bias.dtype != dt or bias.size != N):
        return None
    zp = _zero_points(zero_points, dt, N, k_blocks, bits)
    if zp is None:
        return None
    return zp, k_blocks


def run_matmul_nbits(A, B, scales, zero_points, g_idx, bias, *, K, N, bits, block_size, weight_prepacked):
    """Y on the GPU, or None when the kernels do not take these inputs."""
    plan = _plan(A, B, scales, zero_points, g_idx, bias, K, N, bits, block_size, weight_prepacked)
    if plan is None:
        return None
    (zp_packed, zp_float, zp_row), k_blocks = plan
    import cupy

    dt = A.dtype
    rows = math.prod(A.shape[:-1])
    packed = (cupy.ascontiguousarray(B), cupy.ascontiguousarray(scales),
              None if zp_packed is None else cupy.ascontiguousarray(zp_packed),
              None if zp_float is None else cupy.ascontiguousarray(zp_float))
    sizes = (np.int64(N), np.int64(K), np.int64(k_blocks), np.int64(block_size), np.int32(bits),
             np.int64(zp_row))
    if rows == 1:
        y = cupy.empty(A.shape[:-1] + (N,), dtype=dt)
        fn = cu.template_function(UNITS, dt, "nbits_gemv")
        grid, block = cu.row_launch_config(N, K)
        b = None if bias is None else cupy.ascontiguousarray(bias)
        fn(grid, block, (cupy.ascontiguousarray(A), *packed[:2], *packed[2:], b, y, *sizes))
        return y
    w = cupy.empty((N, K), dtype=cupy.float32)
    cu.launch_elementwise(cu.template_function(UNITS, dt, "nbits_dequantize"), N * K, (*packed, w, *sizes))
    y = cupy.matmul(A.astype(cupy.float32), w.T)
    if bias is not None:
        y = y + bias.astype(cupy.float32)
    return y.astype(dt)


@kernel("MatMulNBits", since=1, domain=cu.MS_DOMAIN, provider="cuda",
        types={"*": frozenset({"float32", "float16", "uint8", "int32"})},   # CuPy has no bfloat16
        host_inputs=(), capturable=True)
def MatMulNBits(ctx, A, B, scales, zero_points=None, g_idx=None, bias=None, *, K, N, bits=4,
                block_size, accuracy_level=0, weight_prepacked=0):
    """Y = A @ dequantize(B).T (+ bias): a dequantize-GEMV for one row, dequantize + cuBLAS
    for more (raw CUDA)."""
    y = None
    if cu.on_device(ctx, A, B, scales, zero_points, g_idx, bias):
        y = run_matmul_nbits(A, B, scales, zero_points, g_idx, bias, K=K, N=N, bits=bits,
                             block_size=block_size, weight_prepacked=weight_prepacked)
    if y is None:
        return shared.MatMulNBits(ctx, A, B, scales, zero_points, g_idx, bias, K=K, N=N, bits=bits,
                                  block_size=block_size, accuracy_level=accuracy_level,
                                  weight_prepacked=weight_prepacked)
    return y
