"""The shared com.microsoft kernels on the device double (tests/support/device_double.py), an array
module that refuses implicit conversion to NumPy as CuPy does: each family's first
configurations run there with the contrib node placed on the double, and give the CPU's results.
This is what the CUDA provider relies on when it runs these kernels on CuPy."""

import numpy as np
import pytest


from support.device_double import providers as double_providers  # noqa: E402
from support.harness import MS, compare, draw, ortgpu_run  # noqa: E402
from ortgpu.session import InferenceSession  # noqa: E402

import test_contrib_activations as act  # noqa: E402
import test_contrib_attention as att  # noqa: E402
import test_contrib_fused_misc as misc  # noqa: E402
import test_contrib_normalization as norm  # noqa: E402
import test_contrib_rnn as rnn  # noqa: E402

# families whose kernels are host-only (provider="cpu") or read their inputs on the host
HOST_ONLY = {"Unique", "MurmurHash3", "Tokenizer", "NGramRepeatBlock", "DynamicTimeWarping",
             "BifurcationDetector"}
FAMILIES = {name: gen for fams in (act.FAMILIES, norm.FAMILIES, att.FAMILIES, misc.FAMILIES, rnn.FAMILIES)
            for name, gen in fams.items() if name not in HOST_ONLY}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_runs_on_the_double_like_the_cpu(name):
    ran = 0
    for i in range(6):
        case = draw(FAMILIES[name], name, i)
        if any(v.dtype == object for v in case.feeds.values()):
            continue
        sess = InferenceSession(case.model().SerializeToString(), providers=double_providers())
        placed = {op: prov for _, op, prov in sess.get_provider_assignment()}
        got = sess.run(None, case.feeds)
        expected = ortgpu_run(case)
        if case.post is not None:
            expected, got = case.post(expected), case.post([np.asarray(g) for g in got])
        compare(case, expected, got)
        assert placed.get(case.node.op_type) == "FakeDeviceExecutionProvider", placed
        ran += 1
    assert ran >= 3
