"""float16 <-> float32 conversion as compiled bit arithmetic on uint16 / uint32 views.

NumPy converts float16 one element at a time in C (about 1.7 ns per element float32 -> float16
and 0.9 ns back on the 2-core development machine); these bodies are two vectorised passes
over blocks that stay in the L1 cache.  The results equal NumPy's ``astype`` bit for bit
(the tests check every one of the 65536 half values, and float32 values at every rounding
boundary): round to nearest even, subnormals exact, overflow to +-Inf, Inf kept, a NaN kept a
NaN with the top of its payload (NumPy's rule: a payload that would shift out to zero becomes 1,
so the value does not turn into Inf).

half -> float: the half's exponent and mantissa bits move to the float's places and the exponent
bias is adjusted (Inf/NaN get the float's all-ones exponent); a subnormal half m * 2**-24 is
first written as the normal float 2**-14 * (1 + m / 1024) and 2**-14 subtracted in a second pass,
which is exact.

float -> half: normal results round by adding 0xFFF plus the lowest kept mantissa bit before
shifting out 13 bits (a carry into the exponent is the correct rounding, up to Inf); results
below 2**-14 come from the float addition |x| + 0.5, whose hardware rounding (to a multiple of
2**-24) is exactly the half's subnormal rounding, read back through a uint32 view.
"""
from __future__ import annotations

import numpy as np

from ortgpu.providers.cpu import jit
from ortgpu.providers.cpu.jit import compiled, helper, split_range

BLOCK = 2048            # elements per pass: 8 KiB of float32 plus the halves stay in L1
MIN_COMPILED = 1536     # float32 -> float16: below this many elements astype's lower call cost wins
MIN_WIDEN = 6144        # float16 -> float32 (NumPy's own loop is faster that way: 0.9 against 1.7 ns)
WORK_PER_ELEMENT = 3    # in split_range's multiply-add units (~0.25 ns per element)

_HALF_MIN_NORMAL_BITS = 0x38800000   # 2**-14 as float32 bits
_MAGIC_BITS = 0x3F000000             # 0.5 as float32 bits


@helper()
def widen_block(hs, fs):
    """fs (float32) = the halves whose bit patterns are hs (uint16), same length: one block."""
    bits = fs.view(np.uint32)
    magic = np.float32(2.0 ** -14)
    for i in range(hs.shape[0]):
        v = np.uint32(hs[i])
        o = (v & np.uint32(0x7FFF)) << np.uint32(13)
        e = o & np.uint32(0x0F800000)
        o += np.uint32(0x38000000)                     # exponent bias 15 -> 127
        if e == np.uint32(0x0F800000):                 # Inf / NaN: all-ones exponent
            o += np.uint32(0x38000000)
        if e == np.uint32(0):                          # zero / subnormal: 2**-14 (1 + m/1024)
            o += np.uint32(0x00800000)
        else:
            o |= (v & np.uint32(0x8000)) << np.uint32(16)
        bits[i] = o
    for i in range(hs.shape[0]):
        v = hs[i]
        f = fs[i]
        r = f - magic                                  # m * 2**-24, exact
        r = -r if (v & 0x8000) else r
        fs[i] = r if (v & 0x7C00) == 0 else f


@helper()
def narrow_block(fs, hs, scratch):
    """hs (uint16) = the half bit patterns of fs (float32), same length: one block; scratch: a
    float32 array at least as long."""
    us = fs.view(np.uint32)
    sbits = scratch.view(np.uint32)
    half = np.float32(0.5)
    for i in range(fs.shape[0]):
        scratch[i] = abs(fs[i]) + half                 # rounds a subnormal half's mantissa
    for i in range(fs.shape[0]):
        u = us[i]
        a = u & np.uint32(0x7FFFFFFF)
        m = (a & np.uint32(0x007FFFFF)) >> np.uint32(13)
        nan = np.uint32(0x7C00) | (m if m != np.uint32(0) else np.uint32(1))  # payload 0 -> 1
        big = np.uint32(0x7C00) if a <= np.uint32(0x7F800000) else nan          # Inf or NaN
        tiny = sbits[i] - np.uint32(_MAGIC_BITS)                                # subnormal, zero
        near = (a - np.uint32(0x37FFF001) + ((a >> np.uint32(13)) & np.uint32(1))) >> np.uint32(13)
        o = big if a >= np.uint32(0x47800000) else (tiny if a < np.uint32(_HALF_MIN_NORMAL_BITS) else near)
        hs[i] = np.uint16(o | ((u >> np.uint32(16)) & np.uint32(0x8000)))


@compiled
def _half_to_float_body(lo, hi, h, out):
    """out[lo:hi] (float32) from the half bit patterns h[lo:hi] (uint16)."""
    for start in range(lo, hi, BLOCK):
        end = min(start + BLOCK, hi)
        widen_block(h[start:end], out[start:end])     # slices: loops from 0, vectorised


@compiled
def _float_to_half_body(lo, hi, x, out):
    """Half bit patterns out[lo:hi] (uint16) of the float32 x[lo:hi]."""
    scratch = np.empty(BLOCK, np.float32)
    for start in range(lo, hi, BLOCK):
        end = min(start + BLOCK, hi)
        narrow_block(x[start:end], out[start:end], scratch)


def _flat(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x).reshape(-1)


def _run(body, n, work_per_element, *args):
    """body over n elements: directly when one thread's share would take them all anyway (a
    conversion is called dozens of times a run, and split_range's planning is a third of the
    call on a (128, 32) block), else split over the run's threads."""
    if n * work_per_element < 2 * jit.MIN_WORK_PER_THREAD:
        body(0, n, *args)
    else:
        split_range(body, n, work_per_element, *args)


def half_to_float(x: np.ndarray) -> np.ndarray:
    """float16 array x as float32 (a new array of x's shape)."""
    h = _flat(x).view(np.uint16)
    out = np.empty(h.shape[0], np.float32)
    _run(_half_to_float_body, h.shape[0], WORK_PER_ELEMENT, h, out)
    return out.reshape(x.shape)


def float_to_half(x: np.ndarray) -> np.ndarray:
    """float32 array x as float16, rounded to nearest even (a new array of x's shape)."""
    f = _flat(x)
    out = np.empty(f.shape[0], np.uint16)
    _run(_float_to_half_body, f.shape[0], WORK_PER_ELEMENT, f, out)
    return out.view(np.float16).reshape(x.shape)


_F16 = np.dtype(np.float16)
_F32 = np.dtype(np.float32)


def compiled_pair(src, dst) -> bool:
    """Whether converting src -> dst goes through these bodies (float16 <-> float32)."""
    return (src == _F16 and dst == _F32) or (src == _F32 and dst == _F16)


def convert(x, dtype):
    """x as `dtype` (x itself when it has it): float16 <-> float32 NumPy arrays of at least
    MIN_WIDEN / MIN_COMPILED elements through the compiled bodies when they are enabled, else
    astype."""
    dt = np.dtype(dtype)
    src = x.dtype
    if src == dt:
        return x
    if type(x) is np.ndarray and compiled_pair(src, dt):
        if src == _F16 and x.size >= MIN_WIDEN and jit.enabled():
            return half_to_float(x)
        if src == _F32 and x.size >= MIN_COMPILED and jit.enabled():
            return float_to_half(x)
    return x.astype(dt)


def takes(xp, *arrays) -> bool:
    """Whether the compiled float32 bodies serve these arrays: compiled bodies enabled, NumPy
    arrays, float32 or float16 (float16 widened here and rounded once at the end, as the NumPy
    bodies compute it); None entries (absent optional inputs) are skipped."""
    if xp is not np:
        return False
    for a in arrays:   # a plain loop: no generator object on this per-call path
        if a is not None and (type(a) is not np.ndarray or (a.dtype != _F32 and a.dtype != _F16)):
            return False
    return jit.enabled()


def widen(x):
    """x as float32 (x itself when it is), None stays None."""
    return None if x is None else convert(x, _F32)


ADD, SUB, MUL, DIV = 0, 1, 2, 3


@compiled
def _half_binary_body(lo, hi, a, b, out, op):
    """out[lo:hi] = a op b on half bit patterns (uint16, same length): each block widened, one
    float32 operation (0 +, 1 -, 2 *, 3 /), rounded once."""
    fa = np.empty(BLOCK, np.float32)
    fb = np.empty(BLOCK, np.float32)
    for start in range(lo, hi, BLOCK):
        end = min(start + BLOCK, hi)
        n = end - start
        xa, xb = fa[:n], fb[:n]
        widen_block(a[start:end], xa)
        widen_block(b[start:end], xb)
        if op == 0:
            for i in range(n):
                xa[i] = xa[i] + xb[i]
        elif op == 1:
            for i in range(n):
                xa[i] = xa[i] - xb[i]
        elif op == 2:
            for i in range(n):
                xa[i] = xa[i] * xb[i]
        else:
            for i in range(n):
                xa[i] = xa[i] / xb[i]
        narrow_block(xa, out[start:end], xb)


def half_binary(a: np.ndarray, b: np.ndarray, op: int) -> np.ndarray:
    """a op b for float16 arrays of one shape (ADD, SUB, MUL, DIV): NumPy's float16 result bit for
    bit (one float32 operation on two halves, rounded once, is the correctly rounded half result),
    in one compiled pass instead of NumPy's element-by-element float16 loop."""
    x = _flat(a).view(np.uint16)
    y = _flat(b).view(np.uint16)
    out = np.empty(x.shape[0], np.uint16)
    _run(_half_binary_body, x.shape[0], WORK_PER_ELEMENT * 3, x, y, out, op)
    return out.view(np.float16).reshape(a.shape)
