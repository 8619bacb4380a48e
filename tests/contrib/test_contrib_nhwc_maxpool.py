"""NhwcMaxPool (channels-last int8/uint8 MaxPool) against onnxruntime 1.32's CPU kernel over
seeded random configurations: 1-3 spatial axes, kernels, strides, explicit pads, SAME_UPPER /
SAME_LOWER / VALID, dilations and ceil_mode."""
from __future__ import annotations

import numpy as np
import pytest

from support.quant_oracle import assert_close, model, rng_for, run_both

N_CASES = 20


def _case(i):
    rng = rng_for("NhwcMaxPool", i)
    nd = [2, 1, 2, 3][i % 4]
    dtype = np.uint8 if i % 2 else np.int8
    spatial = tuple(int(v) for v in rng.integers(3, 9, nd))
    x = rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max + 1,
                     (int(rng.integers(1, 3)),) + spatial + (int(rng.integers(1, 6)),)).astype(dtype)
    kernel = [int(v) for v in rng.integers(1, 4, nd)]
    attrs = {"kernel_shape": kernel, "strides": [int(v) for v in rng.integers(1, 3, nd)]}
    style = ["pads", "SAME_UPPER", "SAME_LOWER", "VALID", "none"][(i // 4) % 5]
    if style == "pads":
        attrs["pads"] = [int(rng.integers(0, k)) for k in kernel] * 2
    elif style != "none":
        attrs["auto_pad"] = style
    if i % 3 == 2 and style in ("pads", "none", "VALID"):
        attrs["dilations"] = [int(v) for v in rng.integers(1, 3, nd)]
    if i % 5 == 3 and style in ("pads", "none"):
        attrs["ceil_mode"] = 1
    return model("NhwcMaxPool", ["x"], {"x": x}, {}, attrs=attrs), {"x": x}, attrs


@pytest.mark.parametrize("i", range(N_CASES))
def test_nhwc_maxpool_matches_onnxruntime(i):
    m, feeds, attrs = _case(i)
    got, want = run_both(m, feeds)
    assert_close(got, want, what=f"NhwcMaxPool case {i} {attrs}")
