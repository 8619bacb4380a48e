"""MatMul and Gemm on cuBLAS (``cublasGemmStridedBatchedEx``), for the CUDA provider.

Why not just ``cupy.matmul``: CuPy's batched path multiplies float16 in float32 after a
copy and ignores the TF32 setting, and its 2-D path reads TF32 from a process-wide
switch.  Calling cuBLAS directly gives every case the same rules, as onnxruntime has them:

* float16 operands stay float16 in memory and accumulate in float32 on tensor cores
  (compute type ``CUBLAS_COMPUTE_32F``);
* float32 uses TF32 tensor cores when the provider's ``use_tf32`` is on
  (``CUBLAS_COMPUTE_32F_FAST_TF32``), full float32 otherwise;
* float64 in float64; other element types (integers) fall back to the shared kernels.

Row-major C = op(A) op(B) is computed as the column-major C^T = op(B)^T op(A)^T, so the
C-contiguous arrays are handed to cuBLAS without copies and transposes become flags.
Broadcast batch dimensions become stride 0 where one side has no batch; a B without batch
folds A's batch into its rows (one plain GEMM).

The operand planning (``plan_matmul``, ``cublas_args``) is pure array code tested on NumPy;
``cublas_gemm`` and the kernels' GPU path were written without a GPU and have never run.
"""
from __future__ import annotations

import ctypes
import math

import numpy as np

from ortgpu.providers.cuda.options import config_of
from ortgpu.providers.kernels import linalg as shared_linalg
from ortgpu.providers.dtype_sets import FLOATS, INDEX
from ortgpu.providers.registry import kernel

GEMM_DTYPES = frozenset(np.dtype(t) for t in (np.float16, np.float32, np.float64))


# ----------------------------------------------------------------------------- planning

def _c_operand(xp, x, trans: bool):
    """(C-contiguous 2-D array, transpose flag) describing op(x) without copying when x is
    C- or F-contiguous (an F-contiguous x is the C-contiguous x.T, transposed)."""
    if x.flags.c_contiguous:
        return x, trans
    if x.T.flags.c_contiguous:
        return x.T, not trans
    return xp.ascontiguousarray(x), trans


def plan_matmul(xp, A, B):
    """numpy.matmul of A and B as one strided-batched GEMM.

    Returns (a3, b3, trans_a, trans_b, out_shape): a3 and b3 are C-contiguous 3-D arrays
    whose batch is either the output's batch count or 1 (broadcast), trans flags say to
    use the transpose of a3/b3's matrices, and out_shape is the result's shape."""
    a, b = A, B
    drop_m = a.ndim == 1
    drop_n = b.ndim == 1
    if drop_m:
        a = a.reshape(1, -1)
    if drop_n:
        b = b.reshape(-1, 1)
    m, k = a.shape[-2:]
    k2, n = b.shape[-2:]
    if k != k2:
        raise ValueError(f"MatMul: inner dimensions differ: A {tuple(A.shape)}, B {tuple(B.shape)}")
    batch = tuple(np.broadcast_shapes(tuple(a.shape[:-2]), tuple(b.shape[:-2])))
    nb = math.prod(batch)
    out_shape = batch + (() if drop_m else (m,)) + (() if drop_n else (n,))

    trans_a = trans_b = False
    if a.ndim == 2:
        a2, trans_a = _c_operand(xp, a, False)
        a3 = a2.reshape((1,) + a2.shape)
    else:
        a3 = _batched(xp, a, batch, nb)
    if b.ndim == 2:
        b2, trans_b = _c_operand(xp, b, False)
        b3 = b2.reshape((1,) + b2.shape)
    else:
        b3 = _batched(xp, b, batch, nb)
    # B shared by the whole batch and A not transposed: fold A's batch into its rows
    if b3.shape[0] == 1 and a3.shape[0] > 1 and not trans_a:
        a3 = a3.reshape(1, a3.shape[0] * m, k)
    return a3, b3, trans_a, trans_b, out_shape


def _batched(xp, x, batch, nb):
    """x (..., r, c) as a C-contiguous (nb or 1, r, c) array for the output batch `batch`."""
    own = tuple(x.shape[:-2])
    r, c = x.shape[-2:]
    if math.prod(own) == 1:
        return xp.ascontiguousarray(x).reshape(1, r, c)
    if (1,) * (len(batch) - len(own)) + own == batch:
        return xp.ascontiguousarray(x).reshape(nb, r, c)
    # a partial broadcast (e.g. (2,1,…) with (1,3,…)): materialize it
    return xp.ascontiguousarray(xp.broadcast_to(x, batch + (r, c))).reshape(nb, r, c)


def cublas_args(a3, b3, trans_a: bool, trans_b: bool):
    """The cublasGemmStridedBatchedEx geometry for row-major C = op(a3) @ op(b3).

    Returns a dict: first/second operand ('b' then 'a'), their op flags, m, n, k, leading
    dimensions, element strides (0 = broadcast) and the batch count.  C (batch, M, N)
    is C-contiguous with ldc = N."""
    ra, ca = a3.shape[-2:]
    rb, cb = b3.shape[-2:]
    M, K = (ca, ra) if trans_a else (ra, ca)
    Kb, N = (cb, rb) if trans_b else (rb, cb)
    if K != Kb:
        raise ValueError(f"GEMM: inner dimensions differ ({K} and {Kb})")
    batch = max(a3.shape[0], b3.shape[0])
    return {
        "op_first": 1 if trans_b else 0, "op_second": 1 if trans_a else 0,
        "m": N, "n": M, "k": K,
        "ld_first": cb, "ld_second": ca, "ldc": N,
        "stride_first": rb * cb if b3.shape[0] > 1 else 0,
        "stride_second": ra * ca if a3.shape[0] > 1 else 0,
        "stride_c": M * N, "batch": batch, "M": M, "N": N, "K": K,
    }


# ----------------------------------------------------------------------------- cuBLAS (GPU only)

# cuBLAS enums (cublas_api.h / library_types.h): stable across cuBLAS 11-13
_CUDA_R_16F, _CUDA_R_32F, _CUDA_R_64F = 2, 0, 1
_COMPUTE_32F, _COMPUTE_32F_FAST_TF32, _COMPUTE_64F = 68, 77, 70
_GEMM_DEFAULT, _GEMM_DEFAULT_TENSOR_OP = -1, 99


def gemm_types(dt, tf32: bool):
    """(cudaDataType, cublasComputeType, host scalar type, algo) of a GEMM on dtype `dt`."""
    dt = np.dtype(dt)
    if dt == np.float16:
        return _CUDA_R_16F, _COMPUTE_32F, np.float32, _GEMM_DEFAULT_TENSOR_OP
    if dt == np.float32:
        return _CUDA_R_32F, (_COMPUTE_32F_FAST_TF32 if tf32 else _COMPUTE_32F), np.float32, _GEMM_DEFAULT
    if dt == np.float64:
        return _CUDA_R_64F, _COMPUTE_64F, np.float64, _GEMM_DEFAULT
    raise TypeError(f"cublas_gemm: unsupported dtype {dt}")


class CublasBinding:
    """cuBLAS called through ctypes on CuPy's handle, without CuPy's per-call ``setStream``.

    CuPy's cuBLAS wrappers set the handle's stream before every call, and that raises while
    the stream captures a CUDA graph; so the provider's GEMMs call the library directly.
    Outside a capture the stream is set per call (cheap; CuPy's own calls may have moved
    it); inside one it is left as ``bind_stream`` set it just before the capture began.
    `lib` is the loaded libcublas (a ctypes.CDLL) and `runtime` answers ``streamIsCapturing``;
    both are parameters so the call sequence is tested on the CPU with stubs."""

    def __init__(self, lib, runtime):
        self.lib = lib
        self.runtime = runtime

    def bind_stream(self, handle: int, stream_ptr: int) -> None:
        """Set the handle's stream (before a capture begins, or before an eager call)."""
        _check(self.lib.cublasSetStream_v2(ctypes.c_void_p(handle), ctypes.c_void_p(stream_ptr)),
               "cublasSetStream_v2")

    def gemm_strided_batched(self, handle: int, stream_ptr: int, g: dict, a_ptr: int, b_ptr: int,
                             c_ptr: int, dt, alpha: float, beta: float, tf32: bool) -> None:
        data_type, compute, scalar, algo = gemm_types(dt, tf32)
        if not self.runtime.streamIsCapturing(stream_ptr):
            self.bind_stream(handle, stream_ptr)
        alpha_h = np.array(alpha, dtype=scalar)  # host scalars (the handle is in host pointer mode)
        beta_h = np.array(beta, dtype=scalar)
        i, ll, p = ctypes.c_int, ctypes.c_longlong, ctypes.c_void_p
        status = self.lib.cublasGemmStridedBatchedEx(
            p(handle), i(g["op_first"]), i(g["op_second"]), i(g["m"]), i(g["n"]), i(g["k"]),
            p(alpha_h.ctypes.data),
            p(b_ptr), i(data_type), i(g["ld_first"]), ll(g["stride_first"]),
            p(a_ptr), i(data_type), i(g["ld_second"]), ll(g["stride_second"]),
            p(beta_h.ctypes.data),
            p(c_ptr), i(data_type), i(g["ldc"]), ll(g["stride_c"]),
            i(g["batch"]), i(compute), i(algo))
        _check(status, "cublasGemmStridedBatchedEx")


def _check(status: int, what: str) -> None:
    if status != 0:
        from ortgpu.errors import Fail  # noqa: PLC0415
        raise Fail(f"{what} failed with cublasStatus_t {status}")


_BINDING: CublasBinding | None = None


def binding() -> CublasBinding:
    """The process's CublasBinding on the libcublas CuPy loaded (same soname, same library)."""
    global _BINDING
    if _BINDING is None:
        import cupy  # noqa: PLC0415
        major = cupy.cuda.runtime.runtimeGetVersion() // 1000
        lib = ctypes.CDLL(f"libcublas.so.{major}")
        lib.cublasSetStream_v2.restype = ctypes.c_int
        lib.cublasGemmStridedBatchedEx.restype = ctypes.c_int
        _BINDING = CublasBinding(lib, cupy.cuda.runtime)
    return _BINDING


def bind_current_stream(stream) -> None:
    """Before a capture on `stream`: point CuPy's cuBLAS handle of this device at it, so GEMMs
    inside the capture need no stream call.  Never run on a GPU."""
    import cupy  # noqa: PLC0415
    binding().bind_stream(cupy.cuda.device.get_cublas_handle(), stream.ptr)


def cublas_gemm(a3, b3, trans_a: bool, trans_b: bool, out3, alpha: float = 1.0, beta: float = 0.0,
                tf32: bool = True):
    """out3 = alpha * op(a3) @ op(b3) + beta * out3 on the current CuPy stream, capturable.
    Never run on a GPU."""
    import cupy  # noqa: PLC0415
    g = cublas_args(a3, b3, trans_a, trans_b)
    handle = cupy.cuda.device.get_cublas_handle()
    stream_ptr = cupy.cuda.get_current_stream().ptr
    binding().gemm_strided_batched(handle, stream_ptr, g, a3.data.ptr, b3.data.ptr, out3.data.ptr,
                                   out3.dtype, alpha, beta, tf32)
    return out3


def use_tf32(ctx) -> bool:
    """The running provider's use_tf32 option."""
    return config_of(ctx).use_tf32


# ----------------------------------------------------------------------------- kernels

def _bfloat16(*operands) -> bool:
    """Whether a GEMM's operands are bfloat16: it then runs as the float32 GEMM on float32
    copies and rounds once to bfloat16 at the end (what onnxruntime's CUDA kernels compute:
    float32 accumulation), with use_tf32 as for float32."""
    return all(v is None or np.dtype(v.dtype).name == "bfloat16" for v in operands)


@kernel("MatMul", since=(1, 9, 13), provider="cuda",
        types={"T": FLOATS | INDEX | frozenset({"uint32", "uint64"})})
def MatMul(ctx, A, B):
    """numpy.matmul semantics on cuBLAS (float16/32/64; bfloat16 in float32, see _bfloat16);
    other types use the shared kernel."""
    xp = ctx.xp
    if _bfloat16(A, B):
        return MatMul(ctx, A.astype(np.float32), B.astype(np.float32)).astype(A.dtype)
    if A.dtype != B.dtype or np.dtype(A.dtype) not in GEMM_DTYPES or A.ndim == 0 or B.ndim == 0:
        return shared_linalg.MatMul(ctx, A, B)
    a3, b3, ta, tb, out_shape = plan_matmul(xp, A, B)
    g = cublas_args(a3, b3, ta, tb)
    if math.prod(out_shape) == 0 or g["K"] == 0:
        return xp.zeros(out_shape, dtype=A.dtype)
    out3 = xp.empty((g["batch"], g["M"], g["N"]), dtype=A.dtype)
    cublas_gemm(a3, b3, ta, tb, out3, tf32=use_tf32(ctx))
    return out3.reshape(out_shape)


@kernel("Gemm", since=(1, 6, 7, 9, 11, 13), provider="cuda",
        types={"T": FLOATS | INDEX | frozenset({"uint32", "uint64"})})
def Gemm(ctx, A, B, C=None, *, alpha=1.0, beta=1.0, transA=0, transB=0, broadcast=0):
    """Y = alpha * A' B' + beta * C with C broadcast into the output first (cuBLAS beta);
    bfloat16 in float32 (_bfloat16)."""
    xp = ctx.xp
    if _bfloat16(A, B, C):
        up = [None if v is None else v.astype(np.float32) for v in (A, B, C)]
        return Gemm(ctx, *up, alpha=alpha, beta=beta, transA=transA, transB=transB,
                    broadcast=broadcast).astype(A.dtype)
    if A.dtype != B.dtype or np.dtype(A.dtype) not in GEMM_DTYPES or A.ndim != 2 or B.ndim != 2 \
            or (C is not None and C.dtype != A.dtype):
        return shared_linalg.Gemm(ctx, A, B, C, alpha=alpha, beta=beta, transA=transA, transB=transB,
                                  broadcast=broadcast)
    a2, ta = _c_operand(xp, A, bool(transA))
    b2, tb = _c_operand(xp, B, bool(transB))
    a3 = a2.reshape((1,) + a2.shape)
    b3 = b2.reshape((1,) + b2.shape)
    g = cublas_args(a3, b3, ta, tb)
    out = xp.empty((g["M"], g["N"]), dtype=A.dtype)
    use_c = C is not None and beta != 0.0
    if use_c:
        out[...] = C  # broadcast C into the output; cuBLAS then adds alpha * A'B'
    if out.size == 0:
        return out
    if g["K"] == 0:
        return out * A.dtype.type(beta) if use_c else xp.zeros_like(out)
    cublas_gemm(a3, b3, ta, tb, out.reshape((1,) + out.shape), alpha=float(alpha),
                beta=float(beta) if use_c else 0.0, tf32=use_tf32(ctx))
    return out
