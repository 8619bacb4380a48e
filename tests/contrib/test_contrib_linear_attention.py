"""LinearAttention and CausalConvWithState (Gated DeltaNet / Mamba blocks that onnxruntime 1.32's
CPU provider registers) against onnxruntime's CPU kernels over seeded random configurations:
the four update rules, grouped query heads, past state or none, per-head and per-key-dim decay,
scale; causal convolutions channels-first and channels-last (with extra channel axes), kernel
sizes, dilation, bias, SiLU, carried state.  Tolerances: float32 1e-4 of the output's largest
magnitude (token-by-token float32 recurrences in both runtimes, summed in different orders);
float16 2e-3 of it (rounding of the output)."""
from __future__ import annotations

import numpy as np
import pytest

from support.quant_oracle import model, rng_for, run_both

N_CASES = 16
RULES = ("linear", "gated", "delta", "gated_delta")


def _close(got, want, dtype, what):
    assert len(got) == len(want)
    tol = 1e-4 if dtype == np.float32 else 2e-3
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, (what, g.dtype, g.shape, w.dtype, w.shape)
        g, w = g.astype(np.float32), w.astype(np.float32)
        err = float(np.abs(g - w).max(initial=0))
        assert err <= tol * (float(np.abs(w).max(initial=0)) + 1e-3), f"{what}: error {err:.3g}"


@pytest.mark.parametrize("i", range(N_CASES))
def test_linear_attention(i):
    rng = rng_for("LinearAttention", i)
    rule = RULES[i % 4]
    dtype = np.float16 if i % 5 == 4 else np.float32
    b, t = int(rng.integers(1, 3)), int(rng.integers(1, 6))
    hkv, group = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    dk, dv = int(rng.integers(2, 5)), int(rng.integers(2, 5))
    hq = hkv * group
    feeds = {"q": rng.normal(size=(b, t, hq * dk)).astype(dtype),
             "k": (rng.normal(size=(b, t, hkv * dk)) * 0.5).astype(dtype),
             "v": rng.normal(size=(b, t, hkv * dv)).astype(dtype)}
    order = ["q", "k", "v", ""]
    if rng.random() < 0.5:
        feeds["past"] = (rng.normal(size=(b, hkv, dk, dv)) * 0.5).astype(dtype)
        order[3] = "past"
    if "gated" in rule:
        per_dim = rng.random() < 0.4
        feeds["g"] = -np.abs(rng.normal(size=(b, t, hkv * dk if per_dim else hkv))).astype(dtype)
    order.append("g" if "gated" in rule else "")
    if "delta" in rule:
        feeds["beta"] = rng.random(size=(b, t, hkv)).astype(dtype)
        order.append("beta")
    while order[-1] == "":
        order.pop()
    attrs = {"q_num_heads": hq, "kv_num_heads": hkv, "update_rule": rule}
    if rng.random() < 0.3:
        attrs["scale"] = 0.7
    got, want = run_both(model("LinearAttention", order, feeds, {}, n_outputs=2, attrs=attrs), feeds)
    _close(got, want, dtype, f"case {i} {attrs}")


@pytest.mark.parametrize("i", range(N_CASES))
def test_causal_conv_with_state(i):
    rng = rng_for("CausalConvWithState", i)
    dtype = np.float16 if i % 5 == 4 else np.float32
    b, seq, taps = int(rng.integers(1, 3)), int(rng.integers(1, 7)), int(rng.integers(1, 5))
    dilation = int(rng.choice([1, 1, 2]))
    channels_last = i % 2 == 1
    chan_shape = (int(rng.integers(1, 4)), int(rng.integers(1, 4))) if channels_last and i % 4 == 3 else (int(rng.integers(1, 6)),)
    chans = int(np.prod(chan_shape))
    keep = (taps - 1) * dilation
    x_shape = (b, seq) + chan_shape if channels_last else (b, chans, seq)
    feeds = {"x": rng.normal(size=x_shape).astype(dtype)}
    consts = {"w": rng.normal(size=(chans, 1, taps)).astype(dtype)}
    order = ["x", "w", ""]
    if rng.random() < 0.6:
        consts["bias"] = rng.normal(size=chans).astype(dtype)
        order[2] = "bias"
    if keep and rng.random() < 0.6:
        st_shape = (b, keep) + chan_shape if channels_last else (b, chans, keep)
        feeds["past"] = rng.normal(size=st_shape).astype(dtype)
        order.append("past")
    while order[-1] == "":
        order.pop()
    attrs = {"dilation": dilation, "activation": ["none", "silu", "swish"][i % 3]}
    if channels_last:
        attrs["channels_last"] = 1
    got, want = run_both(model("CausalConvWithState", order, feeds, consts, n_outputs=2, attrs=attrs), feeds)
    _close(got, want, dtype, f"case {i} {attrs} {x_shape}")


@pytest.mark.parametrize("i", range(12))
def test_varlen_causal_conv_with_state(i):
    rng = rng_for("VarlenCausalConvWithState", i)
    dtype = np.float16 if i % 5 == 4 else np.float32
    lens = rng.integers(1, 6, int(rng.integers(1, 4)))
    chans, taps = int(rng.integers(1, 6)), int(rng.integers(1, 5))
    dilation = int(rng.choice([1, 1, 2]))
    keep = (taps - 1) * dilation
    feeds = {"x": rng.normal(size=(int(lens.sum()), chans)).astype(dtype),
             "state": rng.normal(size=(lens.size, chans, keep)).astype(dtype)}
    consts = {"w": rng.normal(size=(chans, 1, taps)).astype(dtype),
              "cu": np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)}
    order = ["x", "w", "cu", "", "state"]
    if rng.random() < 0.6:
        consts["bias"] = rng.normal(size=chans).astype(dtype)
        order[3] = "bias"
    attrs = {"dilation": dilation, "activation": ["none", "silu", "swish"][i % 3]}
    got, want = run_both(model("VarlenCausalConvWithState", order, feeds, consts, n_outputs=2, attrs=attrs), feeds)
    _close(got, want, dtype, f"case {i} {attrs} lens {lens.tolist()}")
