"""Tokenizer of onnxruntime's com.microsoft domain: split each string of an [N] or [N, C]
tensor into tokens, padded into a trailing axis.

Tokens come from splitting at the ``separators`` regular expressions (``[""]`` splits into
characters) or, with ``tokenexp``, are the matches of that expression.  Empty tokens and those
shorter than ``mincharnum`` characters are dropped; ``mark=1`` frames each row's tokens with
U+0002 and U+0003; rows are padded with ``pad_value`` to the longest.  Where no row has a token
the output's last axis is empty, as onnxruntime returns it.  onnxruntime uses RE2; Python's
``re`` agrees with it on the expressions RE2 accepts that have no backtracking-only features.
"""
from __future__ import annotations

import re

import numpy as np

from ortgpu.providers.dtype_sets import STRING
from ortgpu.providers.registry import kernel

MS = "com.microsoft"
START, END = "\x02", "\x03"


def _splitter(separators, tokenexp, mincharnum):
    """fn(text) -> tokens, from the attributes (exactly one of separators / tokenexp)."""
    if separators and tokenexp:
        raise ValueError("Tokenizer: give either 'separators' or 'tokenexp', not both")
    if not separators and not tokenexp:
        raise ValueError("Tokenizer: one of the attributes 'separators' or 'tokenexp' is required")
    if mincharnum < 1:
        raise ValueError(f"Tokenizer: mincharnum must be at least 1, got {mincharnum}")
    if tokenexp:
        pattern = re.compile(tokenexp)
        return lambda text: [t for t in pattern.findall(text) if isinstance(t, str)]
    if list(separators) == [""]:
        return list
    pattern = re.compile("|".join(f"(?:{s})" for s in separators if s))
    return pattern.split


@kernel("Tokenizer", since=1, domain=MS, provider="cpu", types={"*": STRING}, capturable=False)
def Tokenizer(ctx, X, *, mark=0, pad_value="#", separators=None, tokenexp=None, mincharnum=1):
    """Tokens of each string along a new last axis, padded with pad_value."""
    if X.ndim not in (1, 2):
        raise ValueError(f"Tokenizer: input 'X' must be [N] or [N, C], got shape {tuple(X.shape)}")
    split = _splitter(separators, tokenexp, int(mincharnum))
    rows = []
    for text in X.reshape(-1):
        toks = [t for t in split(str(text)) if t and len(t) >= mincharnum]
        rows.append(toks)
    width = max((len(t) for t in rows), default=0)
    if width:
        width += 2 * bool(mark)
    out = np.full((len(rows), width), pad_value, dtype=object)
    for i, toks in enumerate(rows):
        if width:
            framed = [START, *toks, END] if mark else toks
            out[i, :len(framed)] = framed
    return out.reshape(X.shape + (width,))
