"""Compiled body of Resize's commonest upsampling: nearest by whole factors along the last two
axes (a detector's feature-pyramid 2x), where output pixel (h, w) copies input pixel
(h // kh, w // kw).  NumPy's take along each axis in turn made two full copies, the last one
an element-by-element gather (PP-OCRv4 det's 96x60x80 -> 96x120x160: 2.2 ms); here each output
row is written once, the first of its kh copies from the source row and the rest copied from
it.  A copy only: elements move as unsigned integers of their width, so every dtype takes it.
"""
from __future__ import annotations

import numpy as np

from ortgpu.providers.cpu.jit import compiled, split_range

_WORDS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


@compiled
def _nearest_repeat(lo, hi, x, y, kh, kw):
    """Planes lo..hi of y (P, H*kh, W*kw) from x (P, H, W): y[q, h*kh + i, w*kw + j] = x[q, h, w]."""
    h_all, w_all = x.shape[1], x.shape[2]
    for q in range(lo, hi):
        for h in range(h_all):
            src = x[q, h]
            first = y[q, h * kh]
            if kw == 2:
                for w in range(w_all):
                    v = src[w]
                    first[2 * w] = v
                    first[2 * w + 1] = v
            else:
                for w in range(w_all):
                    v = src[w]
                    for j in range(kw):
                        first[w * kw + j] = v
            for i in range(1, kh):
                row = y[q, h * kh + i]
                for t in range(first.shape[0]):
                    row[t] = first[t]


def takes(x) -> bool:
    """Whether the body can copy x's elements (a NumPy array of 1, 2, 4 or 8-byte elements)."""
    return type(x) is np.ndarray and x.dtype.itemsize in _WORDS and x.dtype.kind in "fiub"


def nearest_repeat(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """x (..., H, W) upsampled by whole factors kh, kw, nearest: (..., H*kh, W*kw) of x's dtype."""
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    planes = int(np.prod(lead, dtype=np.int64))
    word = _WORDS[x.dtype.itemsize]
    xx = np.ascontiguousarray(x).view(word).reshape(planes, h, w)
    y = np.empty((planes, h * kh, w * kw), word)
    split_range(_nearest_repeat, planes, h * kh * w * kw / 4, xx, y, kh, kw)
    return y.view(x.dtype).reshape(lead + (h * kh, w * kw))
