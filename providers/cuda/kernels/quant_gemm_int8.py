"""Raw CUDA launcher of the int8 GEMM (source: quant_gemm_int8.cu) for QLinearMatMul and
MatMulInteger: int8/uint8 x int8/uint8 -> int32, with QLinearMatMul's requantization
(a_scale * b_scale / y_scale, round half to even, + y_zero_point, saturate) in the epilogue, so
the int32 product is never written out.

Taken: A of any rank (its leading dims are rows), a 2-D B, per-tensor A scale and zero point,
B's scale and zero point per tensor or per column, per-tensor y_scale / y_zero_point, and
K * 255 * 255 < 2**31 (K <= 33025: the int32 accumulation is exact whatever the zero points).
Everything stays on the device: the multiplier is computed there with CuPy, the kernel reads
the zero points, and the choice between the float32 and float64 epilogue depends on the types
and K only (quantize.requant_type), so the launch needs no host round trip and is capturable.
Anything else (batched B, per-row A zero points, float8) goes to the shared kernel
(providers/kernels/quantize.py), whose results these equal exactly.

QLinearConv (2-D) goes through the same GEMM: a raw im2col kernel lays out each group's input
patches (padding holds x's zero point, which the GEMM subtracts), the GEMM multiplies them with the
group's transposed weight, adds the int32 bias and requantizes per output channel; its epilogue
always multiplies in float64 (the bias's size is not known without reading it), where the host
kernel may round the product to float32 first: the two agree but on a rare tie, one step apart.

Never run on a GPU: written and checked on the host emulator (tests/test_cuda_quant_gemm_emulated.py).
"""
from __future__ import annotations

import math

import numpy as np

from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.kernels import quantize as shared
from ortgpu.providers.registry import kernel

SOURCE = "quant_gemm_int8.cu"
TILE = 16   # QGEMM_TILE
INT8 = (np.dtype(np.int8), np.dtype(np.uint8))
OUTPUTS = INT8 + (np.dtype(np.int32),)
INT32_EXACT = 2 ** 31 - 1


def _names() -> list[str]:
    gemms = [f"qgemm_int8<{cu.CTYPE[a]}, {cu.CTYPE[b]}, {cu.CTYPE[y]}>" for a in INT8 for b in INT8 for y in OUTPUTS]
    return gemms + [f"qconv_im2col<{cu.CTYPE[t]}>" for t in INT8]


UNIT = cu.declare(SOURCE, "int8", _names())


def _scalar(p) -> bool:
    return p is None or p.size == 1


def _column(p, n: int) -> bool:
    """One value, or one per column of B (a 1-D array)."""
    return p is None or p.size == 1 or (p.ndim == 1 and p.size == n)


def _range(dtype) -> int:
    lo, hi = shared.int_range(dtype)
    return hi - lo


def plan(a, b, a_zp, b_zp, y_dtype, b_scale=None) -> dict | None:
    """The launch's sizes (from shapes and types only), or None when the kernel does not take
    these inputs."""
    if a.dtype not in INT8 or b.dtype not in INT8 or np.dtype(y_dtype) not in OUTPUTS:
        return None
    if a.ndim < 2 or b.ndim != 2 or a.shape[-1] != b.shape[0] or not _scalar(a_zp):
        return None
    n, k = b.shape[1], b.shape[0]
    if not _column(b_zp, n) or (b_scale is not None and not _column(b_scale, n)):
        return None
    if k * _range(a.dtype) * _range(b.dtype) > INT32_EXACT:
        return None
    return {"m": math.prod(a.shape[:-1]), "n": n, "k": k,
            "wide": int(shared.requant_type(a.dtype, b.dtype, k) == np.float64)}


def run_qgemm(a, b, a_zp, b_zp, p: dict, y_dtype, mult=None, y_zp=None, bias=None):
    """Launch the kernel (every array on the device) with the sizes of :func:`plan`; the
    (..., N) result of `y_dtype`."""
    import cupy

    y_dtype = np.dtype(y_dtype)
    y = cupy.empty(a.shape[:-1] + (p["n"],), dtype=y_dtype)
    if mult is None:   # MatMulInteger: the epilogue stores the int32 sum
        mult = cupy.ones(1, dtype=cupy.float32)
    name = f"qgemm_int8<{cu.CTYPE[a.dtype]}, {cu.CTYPE[b.dtype]}, {cu.CTYPE[y_dtype]}>"
    fn = cu.function(UNIT, name)
    grid = (math.ceil(p["n"] / TILE), math.ceil(p["m"] / TILE))
    contiguous = [None if v is None else cupy.ascontiguousarray(v) for v in (a, b, a_zp, b_zp, mult, y_zp, bias)]
    a, b, a_zp, b_zp, mult, y_zp, bias = contiguous
    fn(grid, (TILE, TILE), (a, b, a_zp, b_zp, np.int32(b_zp is not None and b_zp.size > 1), mult,
                            np.int32(mult.size > 1), y_zp, bias, y, np.int64(p["m"]), np.int64(p["n"]),
                            np.int64(p["k"]), np.int32(p["wide"])))
    return y


@kernel("MatMulInteger", since=10, provider="cuda",
        types={"T1": frozenset({"int8", "uint8"}), "T2": frozenset({"int8", "uint8"}), "T3": frozenset({"int32"})},
        host_inputs=(), capturable=True)
def MatMulInteger(ctx, A, B, a_zero_point=None, b_zero_point=None):
    """(A - a_zero_point) @ (B - b_zero_point) in int32 (raw CUDA int8 GEMM)."""
    if cu.on_device(ctx, A, B, a_zero_point, b_zero_point):
        p = plan(A, B, a_zero_point, b_zero_point, np.int32)
        if p is not None:
            return run_qgemm(A, B, a_zero_point, b_zero_point, p, np.int32)
    return shared.MatMulInteger(ctx, A, B, a_zero_point, b_zero_point)


@kernel("QLinearMatMul", since=(10, 21), provider="cuda",
        types={"T1": frozenset({"int8", "uint8"}), "T2": frozenset({"int8", "uint8"}),
               "T3": frozenset({"int8", "uint8"}), "TS": frozenset({"float32"})},
        host_inputs=(), capturable=True)
def QLinearMatMul(ctx, a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    """Quantized matmul: the int8 GEMM with the requantization by a_scale * b_scale / y_scale
    in its epilogue (raw CUDA)."""
    args = (a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point)
    if cu.on_device(ctx, *args) and _scalar(a_scale) and _scalar(y_scale) and _scalar(y_zero_point):
        p = plan(a, b, a_zero_point, b_zero_point, y_zero_point.dtype, b_scale)
        if p is not None:
            f32 = np.float32   # the multiplier in float32, in the shared kernel's order of operations
            mult = a_scale.astype(f32).reshape(()) * b_scale.astype(f32) / y_scale.astype(f32).reshape(())
            return run_qgemm(a, b, a_zero_point, b_zero_point, p, y_zero_point.dtype, mult.reshape(-1), y_zero_point)
    return shared.QLinearMatMul(ctx, *args)


def _per_channel(p, channels: int) -> bool:
    return p is None or p.size == 1 or (p.ndim == 1 and p.size == channels)


def _slice(p, lo: int, hi: int):
    """The group's part of a per-output-channel parameter (a per-tensor one as it is)."""
    return p if p is None or p.size == 1 else p.reshape(-1)[lo:hi]


def conv_geometry(x_shape, w_shape, group, auto_pad, dilations, kernel_shape, pads, strides) -> dict | None:
    """Sizes of a 2-D QLinearConv for the im2col + GEMM path, or None when it does not apply."""
    from ortgpu.providers.kernels.conv import fill_spatial, resolve_pads  # noqa: PLC0415
    if len(x_shape) != 4 or len(w_shape) != 4 or group < 1 or x_shape[1] != w_shape[1] * group \
            or w_shape[0] % group or (kernel_shape and list(kernel_shape) != list(w_shape[2:])):
        return None
    strides, dilations = fill_spatial(strides, 2, 1), fill_spatial(dilations, 2, 1)
    begins, ends = resolve_pads(x_shape[2:], list(w_shape[2:]), strides, dilations, auto_pad, pads)
    out = [(size + b + e - ((k - 1) * d + 1)) // s + 1
           for size, b, e, k, d, s in zip(x_shape[2:], begins, ends, w_shape[2:], dilations, strides)]
    k_total = w_shape[1] * w_shape[2] * w_shape[3]
    if min(out) <= 0 or k_total * 255 * 255 > INT32_EXACT:
        return None
    return {"out": out, "strides": strides, "dilations": dilations, "begins": begins, "k": k_total}


def run_qconv(x, x_zp, w, w_zp, mult, y_zp, bias, y_dtype, group, geo):
    """QLinearConv as im2col + the int8 GEMM per group (every array on the device)."""
    import cupy

    n, c, h, wd = x.shape
    co, cg, kh, kw = w.shape
    oh, ow = geo["out"]
    cog, k = co // group, geo["k"]
    rows = n * oh * ow
    x = cupy.ascontiguousarray(x)
    im2col = cu.function(UNIT, f"qconv_im2col<{cu.CTYPE[x.dtype]}>")
    (sh, sw), (dh, dw), (ph, pw) = geo["strides"], geo["dilations"], geo["begins"]
    parts = []
    for g in range(group):
        col = cupy.empty((rows, k), dtype=x.dtype)
        cu.launch_elementwise(im2col, rows * k, (x, None if x_zp is None else cupy.ascontiguousarray(x_zp), col,
                                                 *(np.int64(v) for v in (n, c, g * cg, cg, h, wd, kh, kw, oh, ow,
                                                                         sh, sw, ph, pw, dh, dw))))
        lo, hi = g * cog, (g + 1) * cog
        b = cupy.ascontiguousarray(w[lo:hi].reshape(cog, k).T)
        plan = {"m": rows, "n": cog, "k": k, "wide": 1}
        parts.append(run_qgemm(col, b, x_zp, _slice(w_zp, lo, hi), plan, y_dtype, _slice(mult, lo, hi), y_zp,
                               _slice(bias, lo, hi)))
    y = parts[0] if group == 1 else cupy.concatenate(parts, axis=1)
    return cupy.ascontiguousarray(y.reshape(n, oh, ow, co).transpose(0, 3, 1, 2))


@kernel("QLinearConv", since=10, provider="cuda",
        types={"T1": frozenset({"int8", "uint8"}), "T2": frozenset({"int8", "uint8"}),
               "T3": frozenset({"int8", "uint8"}), "T4": frozenset({"int32"})},
        host_inputs=(), capturable=True)
def QLinearConv(ctx, x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B=None, *,
                auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """Quantized 2-D convolution: raw im2col, then the int8 GEMM with bias and per-channel
    requantization in its epilogue (raw CUDA); other ranks go to the shared kernel."""
    args = (x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B)
    attrs = dict(auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape, pads=pads,
                 strides=strides)
    co = w.shape[0] if w.ndim else 0
    if (cu.on_device(ctx, *args) and x.dtype in INT8 and w.dtype in INT8 and y_zero_point.dtype in INT8
            and _scalar(x_scale) and _scalar(x_zero_point) and _scalar(y_scale) and _scalar(y_zero_point)
            and _per_channel(w_scale, co) and _per_channel(w_zero_point, co)
            and (B is None or (B.dtype == np.int32 and B.ndim == 1 and B.size == co))):
        geo = conv_geometry(x.shape, w.shape, int(group), auto_pad, dilations, kernel_shape, pads, strides)
        if geo is not None:
            f32 = np.float32   # (x_scale * w_scale) / y_scale in float32, as the shared kernel
            mult = (x_scale.astype(f32).reshape(()) * w_scale.astype(f32).reshape(-1)
                    / y_scale.astype(f32).reshape(()))
            return run_qconv(x, x_zero_point, w, w_zero_point, mult, y_zero_point, B, y_zero_point.dtype,
                             int(group), geo)
    return shared.QLinearConv(ctx, *args, **attrs)
