"""exp of a float32 block, written so that the compiler vectorises it: the bodies of GELU (erf
and tanh forms) and softmax call it on a row slice; and the segments of whole rows that the
row-wise element-wise bodies loop over.

numba's ``math.exp`` / ``np.exp`` in a loop is a scalar libm call per element (no vector math
library here), about 5x slower than this.  The usual reduction: exp(x) = 2**k * exp(r) with
k = round(x / ln 2) and |r| <= ln(2) / 2 (ln 2 split in two constants so that r is exact), exp(r)
by a degree-6 polynomial (Cephes' expf coefficients, about 1 ulp), and 2**k built directly as
the float's exponent bits in a scratch array read back as float32 in a second loop (a
bit-for-float reinterpretation has no scalar form in numba; two vectorised loops over a block
are still several times faster).

Domain: x <= 88 (2**k must stay a normal float); every caller passes x <= 0 (softmax after the
row maximum, -2|u| for tanh, the erfc exponent).  Below -87.33 the result is flushed to 0
(the exact value is a float32 subnormal, under 1.2e-38); -inf gives 0, NaN gives NaN.

These helpers are inlined into the bodies that call them, and numba's disk cache keys a body on
its own source file only: after editing this file in a checkout, remove the cached bodies
(providers/cpu/__pycache__/*.nbi, *.nbc) or a body keeps the old helper (an installed package
rewrites every file, so only checkouts see this).
"""
from __future__ import annotations

import numpy as np

from ortgpu.providers.cpu.jit import helper

_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)        # ln 2 = _LN2_HI - _LN2_LO, _LN2_HI exact in 10 bits
_LN2_LO = np.float32(2.12194440e-4)
_LO = np.float32(-87.33654)              # exp(_LO) ~ 2**-126, the smallest normal float32
_HI = np.float32(88.0)


@helper("contract")
def exp_block(a, scratch):
    """a[i] = exp(a[i]) in place for the float32 slice a; scratch: a float32 array at least as
    long, overwritten (it holds 2**k)."""
    n = a.shape[0]
    bits = scratch.view(np.int32)
    for i in range(n):
        x = a[i]
        ok = x >= _LO                                   # False for NaN and for underflow
        xc = min(x, _HI) if ok else _LO
        k = np.floor(xc * _LOG2E + np.float32(0.5))
        r = xc - k * _LN2_HI + k * _LN2_LO
        p = np.float32(1.9875691500e-4)
        p = p * r + np.float32(1.3981999507e-3)
        p = p * r + np.float32(8.3334519073e-3)
        p = p * r + np.float32(4.1665795894e-2)
        p = p * r + np.float32(1.6666665459e-1)
        p = p * r + np.float32(5.0000001201e-1)
        p = p * r * r + r + np.float32(1.0)
        a[i] = p if x == x else x                      # NaN passes through
        one = np.int32(127 << 23)
        bits[i] = ((np.int32(k) + np.int32(127)) << np.int32(23)) if ok else (np.int32(0) if x == x else one)
    for i in range(n):
        a[i] *= scratch[i]


@helper()
def segment_length(width, block):
    """The length of a segment of whole rows of `width`: as many as fit in `block` elements (one
    row when a row is longer).  Bodies of row-wise element-wise work (a bias over the last axis)
    loop over a segment of several short rows at once rather than one loop per 32-wide row."""
    return width * max(1, block // max(width, 1))


@helper()
def tiled(row, block):
    """`row` repeated over one segment (segment_length(len(row), block) elements)."""
    width = row.shape[0]
    out = np.empty(segment_length(width, block), row.dtype)
    for i in range(out.shape[0]):
        out[i] = row[i % width]
    return out
