"""GatedDeltaNet (token-major gated delta network, registered by onnxruntime 1.32's CPU provider)
against onnxruntime's CPU kernel over seeded random configurations: the four update rules,
separate or packed QKV, rank-3 tokens or the rank-4 (batch, seq) spelling, ragged cu_seqlens or
uniform packing, inverse grouped heads, scalar or per-key-dim decay, the softplus / sigmoid gate
activations with a_log and dt_bias, sigmoid beta, qk_l2_norm, scale, float32 and float16.
Tolerances: 1e-4 (float32) / 2e-3 (float16) of the largest output; the float32 final state 1e-4."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from ortgpu.dtypes import onnx_code
from support.quant_oracle import MS, rng_for, run_both
from test_contrib_linear_attention import RULES, _close

N_CASES = 24


def _case(i):
    rng = rng_for("GatedDeltaNet", i)
    rule = RULES[i % 4]
    dtype = np.float16 if i % 7 == 6 else np.float32
    hq, rep = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    hv, dk, dv = hq * rep, int(rng.integers(2, 5)), int(rng.integers(2, 5))
    lens = rng.integers(1, 5, int(rng.integers(1, 4)))
    ragged = i % 3 != 0
    if not ragged:
        lens[:] = lens[0]
    n, batch = int(lens.sum()), lens.size
    rank4 = not ragged and i % 2 == 0
    packed = i % 5 == 3
    feeds, consts = {}, {}
    l2 = "delta" in rule or rng.random() < 0.3
    q = rng.normal(size=(n, hq, dk))
    k = rng.normal(size=(n, hq, dk)) * (1.0 if l2 else 0.4)
    v = rng.normal(size=(n, hv, dv))
    if packed:
        feeds["q"] = np.concatenate([q.reshape(n, -1), k.reshape(n, -1), v.reshape(n, -1)], 1).astype(dtype)
        order = ["q", "", ""]
    else:
        feeds.update(q=q.astype(dtype), k=k.astype(dtype), v=v.astype(dtype))
        order = ["q", "k", "v"]
    if rank4:
        for name in ("q", "k", "v"):
            if name in feeds:
                feeds[name] = feeds[name].reshape((batch, int(lens[0])) + feeds[name].shape[1:])
    order.append("cu" if ragged else "")
    if ragged:
        consts["cu"] = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    attrs = {"update_rule": rule, "qk_l2_norm": int(l2)}
    gate = ["none", "softplus", "sigmoid", "qwen", "kda"][i % 5] if "gated" in rule else "none"
    tok_shape = (batch, int(lens[0])) if rank4 else (n,)
    if "gated" in rule:
        per_dim = rng.random() < 0.4
        shape = tok_shape + ((hv, dk) if per_dim else (hv,))
        feeds["g"] = (-np.abs(rng.normal(size=shape)) if gate == "none" else rng.normal(size=shape)).astype(dtype)
        if gate != "none":
            attrs["gate_activation"] = gate
            consts["a_log"] = (rng.normal(size=hv) * 0.3).astype(np.float32)
            consts["dt_bias"] = rng.normal(size=(hv, dk) if per_dim and rng.random() < 0.5 else hv).astype(np.float32)
    order.append("g" if "gated" in rule else "")
    if "delta" in rule:
        sig = rng.random() < 0.5
        raw = rng.normal(size=tok_shape + (hv,)) if sig else rng.random(size=tok_shape + (hv,))
        feeds["beta"] = raw.astype(dtype)
        if sig:
            attrs["beta_activation"] = "sigmoid"
    order.append("beta" if "delta" in rule else "")
    if packed or not ragged or rng.random() < 0.5:
        feeds["state"] = (rng.normal(size=(batch, hv, dv, dk)) * 0.3).astype(np.float32)
    order.append("state" if "state" in feeds else "")
    order += ["a_log" if "a_log" in consts else "", "dt_bias" if "dt_bias" in consts else ""]
    while order[-1] == "":
        order.pop()
    if rng.random() < 0.3:
        attrs["scale"] = 0.5
    node = helper.make_node("GatedDeltaNet", order, ["out", "final_state"], domain=MS, **attrs)
    g = helper.make_graph([node], "gdn", [helper.make_tensor_value_info(k_, onnx_code(v_.dtype), list(v_.shape))
                                          for k_, v_ in feeds.items()],
                          [helper.make_tensor_value_info("out", onnx_code(np.dtype(dtype)), None),
                           helper.make_tensor_value_info("final_state", TensorProto.FLOAT, None)],
                          initializer=[numpy_helper.from_array(v_, k_) for k_, v_ in consts.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid(MS, 1)], ir_version=10)
    return m.SerializeToString(), feeds, dtype, {**attrs, "packed": packed, "rank4": rank4, "lens": lens.tolist()}


@pytest.mark.parametrize("i", range(N_CASES))
def test_gated_delta_net_matches_onnxruntime(i):
    m, feeds, dtype, what = _case(i)
    got, want = run_both(m, feeds)
    _close(got[:1], want[:1], dtype, f"case {i} {what}")
    _close(got[1:], want[1:], np.float32, f"case {i} state {what}")
