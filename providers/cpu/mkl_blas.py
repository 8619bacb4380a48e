"""float32 GEMMs by a constant weight through Intel oneMKL's packed GEMM, when MKL is installed
(``pip install "ortgpu[mkl]"``; ``ORTGPU_MKL=0`` turns it off).

NumPy's OpenBLAS packs both operands on every call.  For a few rows times a transformer's weight
(30 x 384 @ 384 x 1536: MiniLM's sentence batch) that packing is most of the work: OpenBLAS took
300-370 us there on the 2-core development machine, onnxruntime's MLAS, which packs its weights
once, 155 us.  MKL's ``cblas_sgemm_pack`` lays the weight out once per session (for one row count,
made again when it changes) and ``cblas_sgemm_compute`` multiplies by it: 110-160 us inside the
model, which ran 8-9 ms -> 5-5.5 ms.  Products under ``MIN_MACS`` multiply-adds keep NumPy: a
4x32 BERT's 128 x 32 @ 32 x 128 was slower through MKL's threads, and PP-OCRv4 rec's 40 x 120 @
120 x 240-360, between convolutions on OpenBLAS's threads, made its run 3-7% slower (MiniLM's
smallest product is 4.4M multiply-adds).

The library is loaded by ctypes from the ``mkl`` wheel (``libmkl_rt``, Intel threading layer) on
first use; its thread count is one of the BLAS counts ``threads.BUDGET`` sets per run (threadpoolctl
lists it).  Two settings are made at load:
- conditional numerical reproducibility (``MKL_CBWR_AUTO | MKL_CBWR_STRICT``): the same product
  for any thread count, so runs that share the cores give the serial runs' results bit for bit
  (30 x 1536 @ 1536 x 384 split its sums by thread count otherwise);
- ``KMP_BLOCKTIME=1`` (ms) unless the process set it: Intel OpenMP's workers spin 200 ms after each
  product by default, and beside OpenBLAS's own workers (the convolutions of PP-OCRv4 rec) the
  two pools took turns on the 2 cores: 18 -> 41 ms a run.  With 1 ms, back to 18 ms.
"""
from __future__ import annotations

import ctypes
import os
import threading

import numpy as np

MIN_MACS = 4_000_000   # multiply-adds from which a product by a constant weight goes through MKL

_ROW_MAJOR, _NO_TRANS, _B_MATRIX, _PACKED = 101, 111, 162, 151
_CBWR_AUTO, _CBWR_STRICT = 2, 0x10000
_INTEL_THREADING = 0

_lock = threading.Lock()
_state = {"tried": False, "lib": None}


def enabled() -> bool:
    """MKL is used unless ``ORTGPU_MKL=0`` (read on every call; tests switch it)."""
    return os.environ.get("ORTGPU_MKL", "1") != "0"


def library():
    """The loaded MKL runtime (ctypes), or None where the ``mkl`` package is not installed or
    does not load; loaded once."""
    if _state["tried"]:
        return _state["lib"]
    with _lock:
        if not _state["tried"]:
            _state["lib"] = _load()
            _state["tried"] = True
            if _state["lib"] is not None:
                from ortgpu.threads import BUDGET  # noqa: PLC0415 - threads imports nothing of ours
                BUDGET.libraries_changed()
    return _state["lib"]


def _runtime_path() -> str | None:
    """libmkl_rt of the installed ``mkl`` distribution (its shared libraries are data files
    under the environment's lib folder), or None."""
    import importlib.metadata  # noqa: PLC0415
    try:
        files = importlib.metadata.distribution("mkl").files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name.startswith("libmkl_rt.so"):
            path = str(f.locate())
            if os.path.exists(path):
                return path
    return None


def _load():
    path = _runtime_path()
    if path is None:
        return None
    os.environ.setdefault("KMP_BLOCKTIME", "1")   # read by Intel OpenMP when MKL first starts it
    try:
        lib = ctypes.CDLL(path)
        i, p, f = ctypes.c_int, ctypes.c_void_p, ctypes.c_float
        lib.MKL_Set_Threading_Layer.argtypes = [i]
        lib.MKL_CBWR_Set.argtypes = [i]
        lib.cblas_sgemm_pack_get_size.argtypes = [i, i, i, i]
        lib.cblas_sgemm_pack_get_size.restype = ctypes.c_size_t
        lib.cblas_sgemm_pack.argtypes = [i, i, i, i, i, i, f, p, i, p]
        lib.cblas_sgemm_compute.argtypes = [i, i, i, i, i, i, p, i, p, i, f, p, i]
        lib.MKL_Set_Threading_Layer(_INTEL_THREADING)
        lib.MKL_CBWR_Set(_CBWR_AUTO | _CBWR_STRICT)
    except (OSError, AttributeError):
        return None
    return lib


def takes(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether a (..., K) @ b (K, N), b a constant weight, goes through MKL: both float32, at
    least MIN_MACS multiply-adds, MKL installed and not turned off."""
    return (a.dtype == np.float32 and b.dtype == np.float32 and b.ndim == 2 and a.ndim >= 1 and a.size
            and a.shape[-1] == b.shape[0] and a.size * b.shape[1] >= MIN_MACS and enabled()
            and library() is not None)


class PackedWeight:
    """A (K, N) float32 weight in MKL's packed layout for products with `rows` rows."""

    __slots__ = ("buffer", "rows", "k", "n")

    def __init__(self, b: np.ndarray, rows: int):
        lib = library()
        k, n = b.shape
        src = np.ascontiguousarray(b, dtype=np.float32)
        size = lib.cblas_sgemm_pack_get_size(_B_MATRIX, rows, n, k)
        self.buffer = np.empty(size // 4 + 16, np.float32)   # (size is in bytes)
        lib.cblas_sgemm_pack(_ROW_MAJOR, _B_MATRIX, _NO_TRANS, rows, n, k, 1.0, src.ctypes.data, n,
                             self.buffer.ctypes.data)
        self.rows, self.k, self.n = rows, k, n

    @property
    def nbytes(self) -> int:
        """What the session's prepared-form budget counts (providers/constant_forms.py)."""
        return self.buffer.nbytes


def times_packed(a: np.ndarray, w: PackedWeight) -> np.ndarray:
    """a (..., K) float32 @ the packed weight: (..., N), with a's rows as the weight was packed for."""
    rows = np.ascontiguousarray(a.reshape(-1, w.k))
    if rows.shape[0] != w.rows:
        raise ValueError(f"times_packed: the weight was packed for {w.rows} rows, got {rows.shape[0]}")
    y = np.empty((w.rows, w.n), np.float32)
    library().cblas_sgemm_compute(_ROW_MAJOR, _NO_TRANS, _PACKED, w.rows, w.n, w.k, rows.ctypes.data, w.k,
                                  w.buffer.ctypes.data, w.n, 0.0, y.ctypes.data, w.n)
    return y.reshape(a.shape[:-1] + (w.n,))
