"""Linear algebra: MatMul, Gemm, Einsum, Det.

float16, bfloat16 and float8 operands are multiplied in float32 (NumPy's float16 matmul
accumulates in float16 and ml_dtypes types have no BLAS path) and cast back.
"""
from __future__ import annotations

import numpy as np

from ortgpu.errors import InvalidArgument
from ortgpu.providers.cpu import half_compiled, mkl_blas
from ortgpu.providers.kernels.reduce import work_dtype
from ortgpu.providers.dtype_sets import FLOATS, INDEX, NUMERIC
from ortgpu.providers.registry import kernel


def _as(x, dt):
    """x as dt; float16 <-> float32 by the compiled conversion (half_compiled) on NumPy arrays."""
    return x if x.dtype == dt else half_compiled.convert(x, dt)


@kernel("MatMul", since=(1, 9, 13), types={"T": FLOATS | INDEX | frozenset({"uint32", "uint64"})})
def MatMul(ctx, A, B):
    """numpy.matmul semantics (1-D operands are promoted and the added axis dropped)."""
    xp = ctx.xp
    dt = work_dtype(A.dtype)
    return _as(xp.asarray(times_weight(ctx, _as(A, dt), B, _as(B, dt), 1)), A.dtype)


def times_weight(ctx, a, B, b, index: int):
    """a @ b where b is the node's input `index` (B as fed, b in the work dtype): a constant 2-D
    float32 weight by MKL's packed GEMM where MKL is installed (mkl_blas.takes), up to FEW_ROWS
    rows times a constant 2-D weight by the kept transposed weight, else _matmul."""
    if ctx.xp is np and b.ndim == 2 and a.ndim >= 1 and ctx.is_constant(index):
        if mkl_blas.takes(a, b):
            rows = a.size // a.shape[-1]
            packed = ctx.prepared("mkl packed", (index,), (B,),
                                  lambda: mkl_blas.PackedWeight(b, rows), key=rows)
            return mkl_blas.times_packed(a, packed)
        if 0 < a.size <= FEW_ROWS * a.shape[-1]:
            return _few_rows_times_weight(ctx, a, B, b)
    return _matmul(ctx.xp, a, b)


# A few rows times a constant 2-D weight run as weight^T @ rows^T with the transposed weight
# kept for the session: OpenBLAS packs its operands on every call, and with few rows it does
# better with the weight as the left operand (onnxruntime packs its weights once).  One
# process, 2 threads, min of 200: 30x384 @ 384x1536 318 -> 247 us, 1x1024 @ 1024x1024 83 ->
# 33 us, 8x512 @ 512x512 42 -> 40 us; with 128 rows it is slower (583 -> 692 us).
FEW_ROWS = 32


def _few_rows_times_weight(ctx, a, B, b):
    """a (..., K) @ b (K, N) for a constant b and at most FEW_ROWS rows of a."""
    bt = ctx.prepared(("transposed", b.dtype.str), (1,), (B,), lambda: np.ascontiguousarray(b.T))
    rows = a.reshape(-1, a.shape[-1])
    y = np.ascontiguousarray(np.matmul(bt, rows.T).T)
    return y.reshape(a.shape[:-1] + (b.shape[1],)) if a.ndim != 1 else y.reshape(b.shape[1])


def _matmul(xp, a, b):
    """a @ b; a stack of matrices times one 2-D weight (a transformer's projections) runs as
    one GEMM over the stacked rows: matmul would call the BLAS once per matrix of the stack,
    which for few rows per matrix costs up to 2x (measured on (12, 10, 384) @ (384, 384))."""
    if b.ndim == 2 and a.ndim >= 3 and a.flags.c_contiguous and a.size:
        rows = xp.matmul(a.reshape(-1, a.shape[-1]), b)
        return rows.reshape(a.shape[:-1] + (b.shape[1],))
    return xp.matmul(a, b)


@kernel("Gemm", since=(1, 6, 7, 9, 11, 13),
        types={"T": FLOATS | INDEX | frozenset({"uint32", "uint64"})})
def Gemm(ctx, A, B, C=None, *, alpha=1.0, beta=1.0, transA=0, transB=0, broadcast=0):
    """Y = alpha * A' B' + beta * C, C unidirectionally broadcast (`broadcast` is legacy, pre-7)."""
    xp = ctx.xp
    dt = work_dtype(A.dtype)
    a = _as(A, dt)
    b = _as(B, dt)
    if transA:
        a = a.T
    if transB:
        b = b.T
    y = xp.matmul(a, b)
    if alpha != 1.0:
        y = y * (dt.type(alpha) if dt.kind == "f" else alpha)
    if C is not None and beta != 0.0:
        _check_bias(C.shape, y.shape)
        c = _as(C, dt)
        y = y + (c * (dt.type(beta) if dt.kind == "f" else beta) if beta != 1.0 else c)
    return _as(xp.asarray(y), A.dtype)


def _check_bias(c_shape, y_shape) -> None:
    """Gemm's C must broadcast to Y's (M, N) one way: C of (M, N) growing Y to (2M, N) is no
    bias (onnxruntime's InvalidArgument, where NumPy would broadcast both ways)."""
    ok = len(c_shape) <= 2 and all(c in (1, y) for c, y in zip(reversed(c_shape), reversed(y_shape)))
    if not ok:
        raise InvalidArgument(f"Gemm: Invalid bias shape for broadcast: C has shape {list(c_shape)}, "
                              f"the product has shape {list(y_shape)}")


def _einsum_parts(equation: str, ranks):
    """Split an einsum equation into its input terms and the output term (made explicit)."""
    eq = equation.replace(" ", "")
    if "->" in eq:
        lhs, rhs = eq.split("->")
    else:
        lhs, rhs = eq, None
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ValueError(f"Einsum equation '{equation}' has {len(terms)} operands, got {len(ranks)} inputs")
    if rhs is None:  # implicit mode: letters seen once, sorted; ellipsis dims first
        letters = [c for t in terms for c in t.replace("...", "")]
        once = sorted(c for c in set(letters) if letters.count(c) == 1)
        rhs = ("..." if "..." in lhs else "") + "".join(once)
    return terms, rhs


@kernel("Einsum", since=(12, 28), types={"T": NUMERIC})
def Einsum(ctx, *Inputs, equation=""):
    """Einstein summation; spaces allowed, implicit output sorted by ASCII code (upper case first)."""
    xp = ctx.xp
    terms, rhs = _einsum_parts(equation, [x.ndim for x in Inputs])
    out_dtype = Inputs[0].dtype
    dt = work_dtype(out_dtype)
    ops = [_as(x, dt) for x in Inputs]
    kw = {"optimize": True} if xp is np else {}  # NumPy: contract through BLAS, in a good order
    y = xp.einsum(",".join(terms) + "->" + rhs, *ops, **kw)
    return _as(xp.asarray(y), out_dtype)


@kernel("Det", since=(11, 22), types={"T": FLOATS})
def Det(ctx, X):
    """Determinant of the trailing M x M matrices; a 2-D input gives a scalar."""
    xp = ctx.xp
    dt = np.dtype(np.float64) if X.dtype == np.float64 else np.dtype(np.float32)
    y = xp.linalg.det(_as(X, dt))
    return _as(xp.asarray(y), X.dtype)
