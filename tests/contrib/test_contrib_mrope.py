"""MRotaryEmbedding (multimodal rotary position embedding of Qwen2-VL and later, registered by
onnxruntime 1.32's CPU provider) against onnxruntime's CPU kernel over seeded random
configurations: 3-D and 4-D input, full and partial rotary dims, interleaved and half-split
rotation, the sectioned and interleaved M-RoPE layouts, random section splits (zero-width
sections included), float32 and float16.  Tolerances as in test_contrib_gated_ops.py."""
from __future__ import annotations

import numpy as np
import pytest

from support.quant_oracle import rng_for
from test_contrib_gated_ops import DTYPES, _compare, _run

N_CASES = 20


@pytest.mark.parametrize("i", range(N_CASES))
def test_mrotary_embedding(i):
    rng = rng_for("MRotaryEmbedding", i)
    dtype = DTYPES[i % 2]          # onnxruntime's CPU kernel: float32 and float16
    b, s, n = int(rng.integers(1, 3)), int(rng.integers(1, 6)), int(rng.integers(1, 4))
    d = 2 * int(rng.integers(2, 7))
    partial = i % 4 == 3
    rd = d - 2 * int(rng.integers(1, d // 2)) if partial else d
    half = rd // 2
    cut = np.sort(rng.integers(0, half + 1, 2))
    section = [int(cut[0]), int(cut[1] - cut[0]), int(half - cut[1])]
    max_pos = 16
    four_d = i % 2 == 0 and not partial
    x = rng.normal(size=(b, n, s, d) if four_d else (b, s, n * d)).astype(dtype)
    angles = np.arange(max_pos)[:, None] * rng.random(half)[None]
    consts = {"pos": rng.integers(0, max_pos, (3, b, s)).astype(np.int64),
              "cos": np.cos(angles).astype(dtype), "sin": np.sin(angles).astype(dtype)}
    attrs = {"mrope_section": section, "mrope_layout": int(rng.integers(0, 2)), "interleaved": int(rng.integers(0, 2))}
    if not four_d:
        attrs["num_heads"] = n
    if partial:
        attrs["rotary_embedding_dim"] = rd
    got, want = _run("MRotaryEmbedding", ["x", "pos", "cos", "sin"], {"x": x}, consts, attrs)
    _compare(got, want, dtype)
