"""Signal processing: HannWindow, HammingWindow, BlackmanWindow, DFT, STFT, MelWeightMatrix.

Complex tensors are real tensors with a trailing dimension of 2 (real, imaginary); a real
signal has a trailing dimension of 1.  Transforms run in complex128 for float64 inputs
and complex64 otherwise, and return the input's element type.
"""
from __future__ import annotations

import math

import numpy as np

from ortgpu.dtypes import np_dtype
from ortgpu.providers.dtype_sets import FLOATS, INDEX, NUMERIC
from ortgpu.providers.registry import kernel

# Why the CUDA provider leaves these to the CPU
_WINDOW = "a window built from a scalar size read on the host"
_MEL = "a small constant table built from scalar inputs read on the host"


def _scalar(v):
    """A Python number from a 0-d or 1-element tensor (a declared host input: NumPy)."""
    return np.asarray(v).reshape(-1)[0].item()


def _window(ctx, size, periodic, output_datatype, coeffs):
    """Generalized cosine window sum_k (-1)^k a_k cos(2 pi k n / N), N = size (periodic) or size - 1."""
    xp = ctx.xp
    n = int(_scalar(size))
    denom = n if periodic else n - 1
    pos = xp.arange(n, dtype=np.float64)
    w = xp.zeros(n, dtype=np.float64)
    for k, a in enumerate(coeffs):
        w += (-1) ** k * a * (xp.cos(2.0 * math.pi * k * pos / denom) if k else 1.0)
    return w.astype(np_dtype(output_datatype))


@kernel("HannWindow", since=17, types={"T1": INDEX, "T2": NUMERIC}, host_inputs=(0,), host_only=_WINDOW)
def HannWindow(ctx, size, *, output_datatype=1, periodic=1):
    """0.5 - 0.5 cos(2 pi n / N)."""
    return _window(ctx, size, periodic, output_datatype, (0.5, 0.5))


@kernel("HammingWindow", since=17, types={"T1": INDEX, "T2": NUMERIC}, host_inputs=(0,), host_only=_WINDOW)
def HammingWindow(ctx, size, *, output_datatype=1, periodic=1):
    """25/46 - 21/46 cos(2 pi n / N) (the exact Hamming coefficients, as ONNX specifies)."""
    return _window(ctx, size, periodic, output_datatype, (25.0 / 46.0, 21.0 / 46.0))


@kernel("BlackmanWindow", since=17, types={"T1": INDEX, "T2": NUMERIC}, host_inputs=(0,), host_only=_WINDOW)
def BlackmanWindow(ctx, size, *, output_datatype=1, periodic=1):
    """0.42 - 0.5 cos(2 pi n / N) + 0.08 cos(4 pi n / N)."""
    return _window(ctx, size, periodic, output_datatype, (0.42, 0.5, 0.08))


def _to_complex(xp, x):
    """[..., 1] real or [..., 2] (re, im) tensor -> complex array without the trailing dim."""
    cdt = np.complex128 if x.dtype == np.float64 else np.complex64
    fdt = np.float64 if x.dtype == np.float64 else np.float32
    x = x.astype(fdt, copy=False)
    if x.shape[-1] == 1:
        return x[..., 0].astype(cdt)
    if x.shape[-1] == 2:
        return (x[..., 0] + 1j * x[..., 1]).astype(cdt)
    raise ValueError(f"the last dimension of a signal must be 1 (real) or 2 (complex), got {x.shape[-1]}")


def _from_complex(xp, c, dtype):
    return xp.stack([c.real, c.imag], axis=-1).astype(dtype)


def _dft(ctx, input, dft_length, axis, inverse, onesided):
    xp = ctx.xp
    r = input.ndim
    if not (-r <= axis <= -2 or 0 <= axis <= r - 2):
        raise ValueError(f"DFT axis {axis} is out of range for a signal of rank {r} "
                         f"(the last dimension holds the complex parts)")
    ax = axis % r
    sig = _to_complex(xp, input)
    if dft_length is not None:
        n = int(_scalar(dft_length))
    elif inverse and onesided:
        n = 2 * (input.shape[ax] - 1)
    else:
        n = input.shape[ax]
    if inverse and onesided:  # one-sided spectrum -> full real signal (IRFFT)
        y = xp.fft.irfft(sig, n=n, axis=ax)
        return y[..., None].astype(input.dtype)
    y = xp.fft.ifft(sig, n=n, axis=ax) if inverse else xp.fft.fft(sig, n=n, axis=ax)
    if onesided:
        y = xp.take(y, xp.arange(n // 2 + 1), axis=ax)
    return _from_complex(xp, y, input.dtype)


@kernel("DFT", since=17, types={"T1": FLOATS, "T2": INDEX}, host_inputs=(1,))
def DFT_axis_attribute(ctx, input, dft_length=None, *, axis=1, inverse=0, onesided=0):
    """DFT along the `axis` attribute (default 1); onesided gives n//2+1 bins, or with inverse an IRFFT."""
    return _dft(ctx, input, dft_length, int(axis), bool(inverse), bool(onesided))


@kernel("DFT", since=20, types={"T1": FLOATS, "T2": INDEX}, host_inputs=(1, 2))
def DFT(ctx, input, dft_length=None, axis=None, *, inverse=0, onesided=0):
    """DFT along the `axis` input (default -2, the last signal axis); otherwise as opset 17."""
    ax = -2 if axis is None else int(_scalar(axis))
    return _dft(ctx, input, dft_length, ax, bool(inverse), bool(onesided))


@kernel("STFT", since=17, types={"T1": FLOATS, "T2": INDEX}, host_inputs=(1, 3))
def STFT(ctx, signal, frame_step, window=None, frame_length=None, *, onesided=1):
    """Windowed DFT of frames [i*step, i*step + frame_length); output [batch, frames, bins, 2]."""
    xp = ctx.xp
    step = int(_scalar(frame_step))
    length = signal.shape[1]
    if frame_length is not None:
        flen = int(_scalar(frame_length))
        if window is not None and window.shape[0] != flen:
            raise ValueError(f"STFT: window length {window.shape[0]} differs from frame_length {flen}")
    elif window is not None:
        flen = window.shape[0]
    else:
        flen = length
    sig = _to_complex(xp, signal)  # [batch, length]
    frames = (length - flen) // step + 1
    starts = xp.arange(frames) * step
    idx = starts[:, None] + xp.arange(flen)[None, :]
    framed = sig[:, idx]  # [batch, frames, flen]
    if window is not None:
        framed = framed * window.astype(framed.real.dtype)
    y = xp.fft.fft(framed, n=flen, axis=-1)
    if onesided and signal.shape[-1] == 1:
        y = y[..., :flen // 2 + 1]
    return _from_complex(xp, y, signal.dtype)


@kernel("MelWeightMatrix", since=17, types={"T1": INDEX, "T2": FLOATS, "T3": NUMERIC},
        host_inputs=(0, 1, 2, 3, 4), host_only=_MEL)
def MelWeightMatrix(ctx, num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz,
                    *, output_datatype=1):
    """[dft_length//2 + 1, num_mel_bins] triangular filters, equally spaced on the mel scale
    mel(f) = 2595 log10(1 + f/700), with edges rounded down to DFT bins; peaks are 1."""
    xp = ctx.xp
    n_mel = int(_scalar(num_mel_bins))
    n_dft = int(_scalar(dft_length))
    rate = _scalar(sample_rate)
    lo, hi = float(_scalar(lower_edge_hertz)), float(_scalar(upper_edge_hertz))
    n_bins = n_dft // 2 + 1
    mel_lo = 2595.0 * np.log1p(lo / 700.0) / np.log(10.0)
    mel_hi = 2595.0 * np.log1p(hi / 700.0) / np.log(10.0)
    mels = np.arange(n_mel + 2) * ((mel_hi - mel_lo) / (n_mel + 2)) + mel_lo
    hertz = 700.0 * np.expm1(mels / 2595.0 * np.log(10.0))
    edges = (((n_dft + 1) * hertz) // rate).astype(np.int64)  # left, center, right per band
    left, center, right = edges[:-2], edges[1:-1], edges[2:]
    j = np.arange(n_bins)[:, None]
    rise_w = np.maximum(center - left, 1)
    rise = np.where((j >= left) & (j <= center),
                    np.where(center > left, (j - left) / rise_w, 1.0), 0.0)
    fall_w = np.maximum(right - center, 1)
    fall_mask = (j >= center) & (j < right)
    out = np.where(fall_mask, (right - j) / fall_w, rise)
    return xp.asarray(out.astype(np_dtype(output_datatype)))
