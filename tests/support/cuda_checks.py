"""Comparison helpers shared by the tests of the raw CUDA kernels: the GPU tier
(``test_cuda_math_kernels_gpu.py``, real CuPy) and the emulated tier (``test_cuda_math_kernels_emulated.py``,
the host emulator).  Tolerances, raw kernel against the shared NumPy kernel:

* exact: Add, Sub, Mul, Div, Max, Min, comparisons, Relu, Clip, Where, Cast (one IEEE
  operation, or none, per element in both paths);
* float32: rtol 1e-5, atol 1e-7 for the transcendental ones (CUDA's and NumPy's expf,
  erfcf, tanhf, powf are within a few ulp of each other), softmax rtol 1e-5 (summation
  order); log-softmax atol 1e-6 as well: (x - max) - log(sum) carries the rounding of
  log(sum) near 1, an absolute error of about one float32 ulp of 1; layer norm rtol 1e-4,
  atol 1e-5 (two reductions in another order);
* float16: rtol 2e-3, atol 1e-3 (computed in float32 on both sides; the final rounding to
  float16 may differ by one ulp, 2**-10 relative);
* float64: rtol 1e-12, atol 1e-14.

CuPy compiles every kernel with -ftz=true, and the emulator models it: a float32 result that
NumPy computes as a subnormal may be zero from the raw kernel (a copy keeps it), so
``assert_close`` takes a zero where the reference is a float32 subnormal (``flush_float32``).
"""
from __future__ import annotations

import numpy as np
import pytest

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
I32, I64 = np.dtype(np.int32), np.dtype(np.int64)
FLOATS = (F32, F16, F64)

_F32_TOLERANCE = {"math": (1e-5, 1e-7), "softmax": (1e-5, 1e-7), "logsoftmax": (1e-5, 1e-6),
                  "layernorm": (1e-4, 1e-5)}


def tolerance(dtype, kind="math"):
    """``rtol``/``atol`` keywords for comparing a raw kernel's result of ``dtype`` (see above)."""
    dtype = np.dtype(dtype)
    if kind == "exact" or dtype.kind in "iub":
        return {"rtol": 0, "atol": 0}
    if dtype == F16:
        return {"rtol": 2e-3, "atol": 1e-3}
    if dtype == F64:
        return {"rtol": 1e-12, "atol": 1e-14}
    rtol, atol = _F32_TOLERANCE[kind]
    return {"rtol": rtol, "atol": atol}


def flush_float32(a):
    """``a`` with its float32 subnormals made zero (same sign), as a GPU kernel compiled with
    -ftz=true writes them; other dtypes unchanged."""
    a = np.asarray(a)
    if a.dtype != F32:
        return a
    tiny = np.finfo(np.float32).tiny
    return np.where((a != 0) & (np.abs(a) < tiny), np.copysign(np.float32(0), a), a).astype(F32)


def assert_close(got, want, **tol):
    """Same shape and dtype, then equal (NaN equal to NaN) within ``tol``; where ``want`` is
    a float32 subnormal, ``got`` may be it or zero (flush-to-zero, see above)."""
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    if got.dtype == F32:
        want = np.where((got == 0) & (flush_float32(want) == 0), got, want)
    if tol.get("rtol") == 0 and tol.get("atol") == 0:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), equal_nan=True, **tol)


def random(rng, shape, dtype, low=-4.0, high=4.0):
    """Random values of ``dtype``: uniform floats in [low, high), integers in 25 times that
    range, booleans half true."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        return np.asarray(rng.integers(int(low * 25), int(high * 25) + 1, size=shape)).astype(dtype)
    if dtype.kind == "b":
        return np.asarray(rng.random(shape) < 0.5)
    return np.asarray(rng.uniform(low, high, size=shape)).astype(dtype)


def require_cuda_device():
    """The ``cupy`` module, for a GPU-tier test module to call at import time; skips the
    whole module cleanly when CuPy is not installed or no CUDA device (or driver) exists."""
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    try:
        devices = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # noqa: BLE001  (no driver, no device)
        devices = 0
    if not devices:
        pytest.skip("no CUDA device", allow_module_level=True)
    return cupy
