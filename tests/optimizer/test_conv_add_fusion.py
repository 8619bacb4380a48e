"""ConvAddFusion: Conv + per-channel constant becomes one Conv with bias B + c; near-misses stay."""
import numpy as np
import pytest

from support.conv_models import RNG, X, conv_then
from support.pass_check import check_outputs, ops, run_pass

PER_CHANNEL = {
    "1M11": RNG.standard_normal((1, 4, 1, 1)).astype(np.float32),
    "M11": RNG.standard_normal((4, 1, 1)).astype(np.float32),
    "scalar": np.float32(0.75),
    "single": np.float32([[[-0.5]]]),
}


@pytest.mark.parametrize("shape", list(PER_CHANNEL))
@pytest.mark.parametrize("bias,first", [(True, False), (False, True)], ids=["bias", "no_bias_const_first"])
def test_per_channel_add_folds_into_the_conv(shape, bias, first):
    m = conv_then("Add", PER_CHANNEL[shape], bias=bias, const_first=first)
    graph, n = run_pass(m, "ConvAddFusion")
    assert n == 1 and ops(graph) == ["Conv", "Relu"]
    assert graph.nodes[0].outputs == ["a"] and len(graph.nodes[0].inputs) == 3
    check_outputs(m, {"x": X}, "ConvAddFusion", rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kw", [
    dict(const=RNG.standard_normal((1, 1, 6, 6)).astype(np.float32)),          # varies over space
    dict(const=RNG.standard_normal((2, 4, 1, 1)).astype(np.float32)),          # varies over the batch
    dict(const=RNG.standard_normal((1, 1, 4, 1, 1)).astype(np.float32)),       # grows the rank
    dict(const=PER_CHANNEL["M11"], conv_output_read_twice=True),
    dict(const=PER_CHANNEL["M11"], const_is_input=True),
], ids=["spatial", "batch", "rank", "conv_output_read_twice", "not_constant"])
def test_near_misses_stay(kw):
    m = conv_then("Add", **kw)
    graph, n = run_pass(m, "ConvAddFusion")
    assert n == 0 and "Add" in ops(graph)
    feeds = {"x": X}
    if kw.get("const_is_input"):
        feeds["k"] = kw["const"]
    check_outputs(m, feeds, "ConvAddFusion", rtol=1e-5, atol=1e-5)
