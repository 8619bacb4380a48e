"""Raw CUDA launchers for Cast and CastLike (source: cast.cu) between the element types
CuPy holds (bool, the integers, float16, float32, float64).  Strings, bfloat16, float8
and the other ml_dtypes types go to the shared kernels of ``providers/kernels/cast.py``
(the CUDA provider should not be given them at all).

Never run on a GPU yet: written and compile-checked without a device.
"""
from __future__ import annotations

from ortgpu.providers.cuda.kernels import module as cu
from ortgpu.providers.dtype_sets import COMPLEX, CUPY_BF16
from ortgpu.providers.kernels import cast as shared
from ortgpu.providers.registry import kernel

SOURCE = "cast.cu"


def cast_name(src_ctype: str, dst_ctype: str) -> str:
    return f"cast_flat<{src_ctype}, {dst_ctype}>"


UNITS = {src: cu.declare(SOURCE, cu.CTYPE[src],
                         [cast_name(cu.CTYPE[src], cu.CTYPE[dst]) for dst in cu.CTYPE if dst != src])
         for src in cu.CTYPE}


def run_cast(x_in, dt):
    """``x_in`` converted to dtype ``dt`` on the GPU, or None when not handled here."""
    src = x_in.dtype
    if src not in UNITS or dt not in cu.CTYPE or src == dt:
        return None
    import cupy
    import numpy as np

    x = cupy.ascontiguousarray(x_in)
    y = cupy.empty(x.shape, dtype=dt)
    if x.size:
        fn = cu.function(UNITS[src], cast_name(cu.CTYPE[src], cu.CTYPE[dt]))
        cu.launch_elementwise(fn, x.size, (x, y, np.int64(x.size)))
    return y


@kernel("Cast", since=(1, 6, 9, 13, 19, 21, 23, 24, 25, 28), provider="cuda",
        types={"T1": CUPY_BF16 - COMPLEX, "T2": CUPY_BF16 - COMPLEX})
def Cast(ctx, input, *, to, saturate=1, round_mode="up"):
    """Convert to element type `to` (raw CUDA between CuPy's types)."""
    if cu.on_device(ctx, input):
        y = run_cast(input, shared._target_dtype(to))
        if y is not None:
            return y
    return shared.Cast(ctx, input, to=to, saturate=saturate, round_mode=round_mode)


@kernel("CastLike", since=(15, 19, 21, 23, 24, 25), provider="cuda",
        types={"T1": CUPY_BF16 - COMPLEX, "T2": CUPY_BF16 - COMPLEX})
def CastLike(ctx, input, target_type, *, saturate=1, round_mode="up"):
    """Convert to the element type of `target_type` (raw CUDA between CuPy's types)."""
    if cu.on_device(ctx, input, target_type):
        y = run_cast(input, target_type.dtype)
        if y is not None:
            return y
    return shared.CastLike(ctx, input, target_type, saturate=saturate, round_mode=round_mode)
