"""LinearAttentionGate, EngramGate, HyperConnectionPreMix and HyperConnectionPostMix (com.microsoft
ops that onnxruntime 1.32's CPU provider registers beyond its OperatorKernels.md) against
onnxruntime's CPU kernels over seeded random configurations: float32, float16 and (where
onnxruntime's CPU kernel takes it) bfloat16; grouped and flattened streams; every mixing-weight
shape; optional inputs and second outputs.  Tolerances as in test_contrib_gated_ops.py: float32
1e-5, float16 / bfloat16 one unit in the last place (both compute in float32 and round once)."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from support.quant_oracle import model, rng_for, run_both
from test_contrib_gated_ops import DTYPES, _compare, _run

N_CASES = 12


def _compare_all(got, want, dtype):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        _compare([g], [w], dtype)


def _lead(rng):
    return tuple(int(v) for v in rng.integers(1, 4, int(rng.integers(1, 3))))


@pytest.mark.parametrize("i", range(N_CASES))
def test_linear_attention_gate(i):
    rng = rng_for("LinearAttentionGate", i)
    heads = int(rng.integers(1, 9))
    dtype = DTYPES[i % 3]
    a = (rng.normal(size=_lead(rng) + (heads,)) * 3).astype(dtype)
    consts = {"dt_bias": rng.normal(size=heads).astype(np.float32),
              "decay_scale": -np.exp(rng.normal(size=heads)).astype(np.float32)}
    if dtype == ml_dtypes.bfloat16 or i % 2:
        got, want = _run("LinearAttentionGate", ["a", "dt_bias", "decay_scale"], {"a": a}, consts)
    else:
        feeds = {"a": a, "b": rng.normal(size=a.shape).astype(dtype)}
        got, want = run_both(model("LinearAttentionGate", ["a", "dt_bias", "decay_scale", "b"], feeds, consts,
                                   n_outputs=2), feeds)
    _compare_all(got, want, dtype)


@pytest.mark.parametrize("i", range(N_CASES))
def test_engram_gate(i):
    rng = rng_for("EngramGate", i)
    dtype = DTYPES[i % 2]          # onnxruntime's CPU EngramGate: float32 and float16
    b, s, hc = (int(v) for v in rng.integers(1, 4, 3))
    h = int(rng.integers(2, 17))
    feeds = {"key": rng.normal(size=(b, s, hc, h)).astype(dtype), "query": rng.normal(size=(b, s, hc, h)).astype(dtype),
             "value": rng.normal(size=(b, s, h)).astype(dtype)}
    consts = {"ks": rng.normal(size=(hc, h)).astype(dtype), "qs": rng.normal(size=(hc, h)).astype(dtype)}
    order = ["key", "query", "value", "ks", "qs"]
    attrs = {"epsilon": 1e-3} if i % 3 == 1 else {}
    outputs = 1
    if i % 2:
        consts["cs"] = rng.normal(size=(hc, h)).astype(dtype)
        order.append("cs")
        outputs = 2
    got, want = run_both(model("EngramGate", order, feeds, consts, n_outputs=outputs, attrs=attrs), feeds)
    _compare_all(got, want, dtype)


@pytest.mark.parametrize("i", range(N_CASES))
def test_hyper_connection_pre_mix(i):
    rng = rng_for("HyperConnectionPreMix", i)
    dtype = DTYPES[i % 3]
    lead, c, h = _lead(rng), int(rng.integers(1, 5)), int(rng.integers(1, 9))
    flat = i % 2 == 1
    x = rng.normal(size=lead + ((c * h,) if flat else (c, h))).astype(dtype)
    mix_shapes = [lead + (c,), lead + (c, 1), lead + (c, h)] + ([lead + (c * h,)] if flat else [])
    mix = rng.normal(size=mix_shapes[(i // 2) % len(mix_shapes)]).astype(DTYPES[(i // 3) % 3])
    attrs = {"num_branches": c} if flat else {}
    if i % 4 == 3:
        attrs["reduction_scale"] = float(rng.choice([0.5, 2.0]))
    got, want = _run("HyperConnectionPreMix", ["x", "mix"], {"x": x}, {"mix": mix}, attrs)
    _compare(got, want, dtype)


@pytest.mark.parametrize("i", range(N_CASES))
def test_hyper_connection_post_mix(i):
    rng = rng_for("HyperConnectionPostMix", i)
    dtype = DTYPES[i % 3]
    lead, c, h = _lead(rng), int(rng.integers(1, 5)), int(rng.integers(1, 9))
    flat = i % 4 == 1
    x = rng.normal(size=lead + ((c * h,) if flat else (c, h))).astype(dtype)
    feeds = {"x": x, "block": rng.normal(size=lead + (h,)).astype(dtype)}
    consts = {"post": rng.normal(size=[lead + (c,), lead + (c, 1), lead + (c, h)][i % 3]).astype(DTYPES[(i // 3) % 3])}
    order = ["x", "block", "post"]
    if i % 2 == 0:
        consts["smix"] = rng.normal(size=lead + (c, c)).astype(consts["post"].dtype)   # one M type
        order.append("smix")
    attrs = {"num_branches": c} if flat else {}
    got, want = _run("HyperConnectionPostMix", order, feeds, consts, attrs)
    _compare(got, want, dtype)
