"""QMoE (mixture of experts with uint8-packed 4-/8-bit expert weights) against onnxruntime 1.32's
CPU kernel over seeded random configurations: bit widths, per-row and blocked scales, packed zero
points or the default, biases, k, normalize_routing_weights, relu / gelu / silu / identity and
interleaved swiglu (with and without alpha, beta, limit), float32 and
float16, 2-D and 3-D input; router_weights.  Mixed fc1/fc2 bit widths and the swiglu limit after
the activation, which onnxruntime 1.32's CPU provider refuses, are refused too.

Tolerances (of the output's largest magnitude): 1e-5 in float32 (both dequantize and multiply
in float32); 2e-3 in float16 (the output's rounding); 2e-2 with 8-bit blocked weights, where
onnxruntime 1.32 quantizes the activations to int8 before its products (measured 0.4-0.8%)."""
from __future__ import annotations

import numpy as np
import pytest

import ortgpu
from support.quant_oracle import model, rng_for, run_both

N_CASES = 24
ACTS = ("relu", "gelu", "silu", "identity", "swiglu", "relu")


def _pack(q, bits):
    """uint8 of `bits`-wide values packed along the last axis, low bits first (odd counts padded)."""
    if bits == 8:
        return q.astype(np.uint8)
    if q.shape[-1] % 2:
        q = np.concatenate([q, np.zeros(q.shape[:-1] + (1,), q.dtype)], axis=-1)
    return (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)


def _projection(rng, name, E, rows, cols, bits, block, zp, dtype):
    q = rng.integers(0, 1 << bits, (E, rows, cols))
    shape = (E, rows, cols // block) if block else (E, rows)
    consts = {f"{name}_w": _pack(q, bits), f"{name}_s": (rng.random(shape) * 0.02 + 0.005).astype(dtype)}
    if zp:
        z = rng.integers(0, 1 << bits, shape)
        consts[f"{name}_z"] = _pack(z, bits) if block else _pack(z.reshape(E, rows), bits)
    return consts


def _case(i, variant=None):
    rng = rng_for("QMoE" if variant is None else f"QMoE-{variant}", i)
    bits = [4, 8][(i + i // 6) % 2]
    bits2 = (12 - bits) if variant == "mixed_bits" else bits
    block = [0, 16, 32, 0][(i // 2) % 4]
    zp = bool(rng.random() < 0.5)
    bias = bool(rng.random() < 0.6)
    act = "swiglu" if variant == "limit_after" else ACTS[i % len(ACTS)]
    dtype = np.float16 if i % 7 == 6 else np.float32
    E = int(rng.integers(2, 6))
    H = int(rng.choice([32, 64]))
    I = int(rng.choice([32, 64]))
    F = 2 if act == "swiglu" else 1
    tokens = (int(rng.integers(1, 7)),) if rng.random() < 0.5 else (int(rng.integers(1, 3)), int(rng.integers(1, 5)))
    x = rng.normal(size=tokens + (H,)).astype(dtype)
    router = rng.normal(size=(int(np.prod(tokens)), E)).astype(dtype)
    consts = {**_projection(rng, "fc1", E, F * I, H, bits, block, zp, dtype),
              **_projection(rng, "fc2", E, H, I, bits2, block, zp, dtype)}
    if bias:
        consts["fc1_b"] = rng.normal(size=(E, F * I)).astype(dtype)
        consts["fc2_b"] = rng.normal(size=(E, H)).astype(dtype)
    order = ["x", "router", "fc1_w", "fc1_s", "fc1_b" if bias else "", "fc2_w", "fc2_s", "fc2_b" if bias else ""]
    if zp:
        order += ["", "", "", "fc1_z", "fc2_z"]
    if variant == "router_weights":
        order += [""] * (14 - len(order)) + ["router_w"]
        consts["router_w"] = rng.random((int(np.prod(tokens)), E)).astype(dtype)
    attrs = {"k": int(rng.integers(1, E + 1)), "activation_type": act, "expert_weight_bits": bits,
             "normalize_routing_weights": int(rng.integers(0, 2))}
    if block:
        attrs["block_size"] = block
    if variant == "mixed_bits":
        attrs["fc2_expert_weight_bits"] = bits2
    if variant == "limit_after":
        attrs.update(swiglu_fusion=1, swiglu_limit=float(rng.choice([0.5, 2.0])), swiglu_limit_after_activation=1,
                     activation_alpha=1.702, activation_beta=1.0)
    elif act == "swiglu":
        attrs["swiglu_fusion"] = 1
        if rng.random() < 0.5:
            attrs.update(activation_alpha=1.702, activation_beta=1.0, swiglu_limit=float(rng.choice([2.0, 7.0])))
    tol = 2e-2 if (8 in (bits, bits2) and block) else 2e-3 if dtype == np.float16 else 1e-5
    feeds = {"x": x, "router": router}
    return model("QMoE", order, feeds, consts, attrs=attrs), feeds, tol, attrs


@pytest.mark.parametrize("i", range(N_CASES))
def test_qmoe_matches_onnxruntime(i):
    m, feeds, tol, attrs = _case(i)
    (got,), (want,) = run_both(m, feeds)
    assert got.dtype == want.dtype and got.shape == want.shape
    scale = float(np.abs(want.astype(np.float32)).max()) + 1e-6
    err = float(np.abs(got.astype(np.float32) - want.astype(np.float32)).max())
    assert err <= tol * scale, f"case {i} {attrs}: error {err:.3g} of max {scale:.3g}"


@pytest.mark.parametrize("i", range(8))
def test_qmoe_router_weights(i):
    """router_weights: the mixing weights of the experts router_probs selects (renormalized over
    them with normalize_routing_weights=1)."""
    variant = "router_weights"
    m, feeds, tol, attrs = _case(i, variant)
    (got,), (want,) = run_both(m, feeds)
    scale = float(np.abs(want.astype(np.float32)).max()) + 1e-6
    err = float(np.abs(got.astype(np.float32) - want.astype(np.float32)).max())
    assert err <= tol * scale, f"{variant} case {i} {attrs}: error {err:.3g} of max {scale:.3g}"


@pytest.mark.parametrize("variant", ["mixed_bits", "limit_after"])
def test_qmoe_refuses_what_onnxruntime_cpu_does_not_run(variant):
    m, feeds, _, _ = _case(0, variant)
    with pytest.raises(ortgpu.capi.onnxruntime_pybind11_state.NotImplemented, match="QMoE"):
        ortgpu.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)


def test_qmoe_rejects_misshapen_scales():
    m, feeds, _, _ = _case(0)
    import onnx
    from onnx import numpy_helper
    proto = onnx.load_from_string(m)
    for t in proto.graph.initializer:
        if t.name == "fc2_s":
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t)[:, :-1].copy(), "fc2_s"))
    with pytest.raises(ortgpu.capi.onnxruntime_pybind11_state.InvalidArgument, match="fc2_scales"):
        ortgpu.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
