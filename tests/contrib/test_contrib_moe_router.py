"""MoEGroupRouter (group-limited sigmoid MoE routing, registered by onnxruntime 1.32's CPU provider)
against onnxruntime's CPU kernel over seeded random configurations: expert and group counts,
topk_group, group_topk (clamped to the group size), top_k, sentinel, float32 / float16 logits,
and the full-score outputs with and without a projection.  Routed scores: float32 1e-5,
float16 one unit in the last place; the full-score outputs are float32 (1e-5)."""
from __future__ import annotations

import numpy as np
import pytest

from onnx import TensorProto, helper, numpy_helper

from ortgpu.dtypes import onnx_code
from support.quant_oracle import MS, model, rng_for, run_both

N_CASES = 16


def _close(got, want, tol):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, g.shape, w.dtype, w.shape)
        np.testing.assert_allclose(g.astype(np.float32), w.astype(np.float32), rtol=tol, atol=tol)


@pytest.mark.parametrize("i", range(N_CASES))
def test_group_router(i):
    rng = rng_for("MoEGroupRouter", i)
    dtype = np.float16 if i % 3 == 2 else np.float32
    n_group = int(rng.choice([1, 2, 4]))
    per_group = int(rng.integers(2, 5))
    n_exp = n_group * per_group
    topk_group = int(rng.integers(1, n_group + 1))
    top_k = int(rng.integers(1, topk_group * per_group + 1))
    lead = (int(rng.integers(1, 6)),) if i % 2 else (int(rng.integers(1, 3)), int(rng.integers(1, 4)))
    feeds = {"logits": (rng.normal(size=lead + (n_exp,)) * 2).astype(dtype)}
    consts = {"bias": (rng.normal(size=n_exp) * 0.1).astype(np.float32)}
    attrs = {"top_k": top_k, "n_group": n_group, "topk_group": topk_group, "group_topk": int(rng.integers(1, 5))}
    if rng.random() < 0.3:
        attrs["router_sentinel"] = -1e4 * float(rng.integers(1, 3))
    got, want = run_both(model("MoEGroupRouter", ["logits", "bias"], feeds, consts, attrs=attrs), feeds)
    _close(got, want, 1e-5 if dtype == np.float32 else 1e-3)


@pytest.mark.parametrize("i", range(6))
def test_group_router_full_scores(i):
    rng = rng_for("MoEGroupRouter-full", i)
    dtype = np.float16 if i % 2 else np.float32
    n_exp = int(rng.integers(2, 9))
    consts = {"bias": (rng.normal(size=n_exp) * 0.1).astype(np.float32)}
    order = ["logits", "bias"]
    if i >= 3:   # projected activations: width a multiple of 256
        feeds = {"logits": (rng.normal(size=(int(rng.integers(1, 5)), 256)) * 0.1).astype(dtype)}
        consts["proj"] = (rng.normal(size=(n_exp, 256)) * 0.1).astype(dtype)
        order.append("proj")
    else:
        feeds = {"logits": rng.normal(size=(int(rng.integers(1, 5)), n_exp)).astype(dtype)}
    node = helper.make_node("MoEGroupRouter", order, ["", "selection_scores", "router_weights"], domain=MS, top_k=1)
    g = helper.make_graph([node], "router", [helper.make_tensor_value_info("logits", onnx_code(dtype), None)],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                           for n in ("selection_scores", "router_weights")],
                          initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid(MS, 1)], ir_version=10)
    got, want = run_both(m.SerializeToString(), feeds)
    _close(got, want, 1e-5)
