"""Float32 data to float16 or bfloat16: the clamping rule and TensorProto rewriting."""
from __future__ import annotations

import ml_dtypes
import numpy as np
from onnx import TensorProto, numpy_helper

# The narrow float types a conversion can target, by ONNX code.
TARGET_DTYPES = {TensorProto.FLOAT16: np.dtype(np.float16), TensorProto.BFLOAT16: np.dtype(ml_dtypes.bfloat16)}

FLOAT16_MIN_POSITIVE = 5.96e-08   # the smallest float16 subnormal, rounded as users write it
FLOAT16_MAX_FINITE = 65504.0      # the largest finite float16


def clamp_to_range(a, min_positive_val: float, max_finite_val: float) -> np.ndarray:
    """`a` (as float32) with nonzero magnitudes below `min_positive_val` raised to it and finite
    magnitudes above `max_finite_val` lowered to it, signs kept; 0, inf and NaN unchanged.
    This keeps a tiny epsilon from becoming 0 and a large constant from becoming inf."""
    a = np.asarray(a, dtype=np.float32)
    mag = np.abs(a)
    tiny = (mag > 0) & (mag < min_positive_val)
    huge = np.isfinite(a) & (mag > max_finite_val)
    if tiny.any() or huge.any():
        a = a.copy()
        a[tiny] = np.copysign(np.float32(min_positive_val), a[tiny])
        a[huge] = np.copysign(np.float32(max_finite_val), a[huge])
    return a


def lower_array(a, target: int, min_positive_val: float = FLOAT16_MIN_POSITIVE,
                max_finite_val: float = FLOAT16_MAX_FINITE) -> np.ndarray:
    """float32 array -> `target` (FLOAT16 after clamping to its range; BFLOAT16 has float32's
    exponent range, so it is only rounded)."""
    if target == TensorProto.FLOAT16:
        return clamp_to_range(a, min_positive_val, max_finite_val).astype(np.float16)
    return np.asarray(a, dtype=np.float32).astype(TARGET_DTYPES[target])


def lower_tensor(t: TensorProto, target: int, min_positive_val: float, max_finite_val: float,
                 name: str | None = None) -> TensorProto:
    """A new TensorProto holding `t`'s float32 data in `target`, named `name` (default t.name)."""
    out = numpy_helper.from_array(lower_array(numpy_helper.to_array(t), target, min_positive_val,
                                              max_finite_val), t.name if name is None else name)
    out.doc_string = t.doc_string
    return out
