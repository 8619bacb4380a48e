"""ConvMulFusion: Conv times a per-channel constant becomes one Conv (W * s[m], B * s)."""
import numpy as np
import pytest

from support.conv_models import RNG, X, conv_then
from support.pass_check import check_outputs, ops, run_pass

SCALES = {
    "1M11": RNG.standard_normal((1, 4, 1, 1)).astype(np.float32),
    "M11": RNG.standard_normal((4, 1, 1)).astype(np.float32),
    "scalar": np.float32(-1.25),
}


@pytest.mark.parametrize("shape", list(SCALES))
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_per_channel_scale_folds_into_the_conv(shape, bias):
    m = conv_then("Mul", SCALES[shape], bias=bias, const_first=not bias)
    graph, n = run_pass(m, "ConvMulFusion")
    assert n == 1 and ops(graph) == ["Conv", "Relu"]
    check_outputs(m, {"x": X}, "ConvMulFusion", rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kw", [
    dict(const=RNG.standard_normal((1, 1, 1, 6)).astype(np.float32)),
    dict(const=SCALES["M11"], conv_output_read_twice=True),
    dict(const=SCALES["M11"], const_is_input=True),
], ids=["spatial", "conv_output_read_twice", "not_constant"])
def test_near_misses_stay(kw):
    m = conv_then("Mul", **kw)
    graph, n = run_pass(m, "ConvMulFusion")
    assert n == 0 and "Mul" in ops(graph)
    feeds = {"x": X, **({"k": kw["const"]} if kw.get("const_is_input") else {})}
    check_outputs(m, feeds, "ConvMulFusion", rtol=1e-5, atol=1e-5)
