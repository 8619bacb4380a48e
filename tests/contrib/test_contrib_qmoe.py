"""QMoE (mixture of experts with uint8-packed 4-/8-bit expert weights) against onnxruntime 1.32's
CPU kernel over seeded random configurations: bit widths, per-row and blocked scales, packed zero
points or the default, biases, k, normalize_routing_weights, relu / gelu / silu / identity and
interleaved swiglu (with and without alpha, beta, limit), float32 and float16, 2-D and 3-D input.

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


def _case(i):
    rng = rng_for("QMoE", i)
    bits = [4, 8][(i + i // 6) % 2]
    block = [0, 16, 32, 0][(i // 2) % 4]
    zp = bool(rng.random() < 0.5)
    bias = bool(rng.random() < 0.6)
    act = ACTS[i % len(ACTS)]
    dtype = np.float16 if i % 7 == 6 else np.float32
    E = int(rng.integers(2, 6))
    H = int(rng.choice([32, 64]))
    I = int(rng.choice([32, 64]))
    F = 2 if act == "swiglu" else 1
    tokens = (int(rng.integers(1, 7)),) if rng.random() < 0.5 else (int(rng.integers(1, 3)), int(rng.integers(1, 5)))
    x = rng.normal(size=tokens + (H,)).astype(dtype)
    router = rng.normal(size=(int(np.prod(tokens)), E)).astype(dtype)
    consts = {**_projection(rng, "fc1", E, F * I, H, bits, block, zp, dtype),
              **_projection(rng, "fc2", E, H, I, bits, block, zp, dtype)}
    if bias:
        consts["fc1_b"] = rng.normal(size=(E, F * I)).astype(dtype)
        consts["fc2_b"] = rng.normal(size=(E, H)).astype(dtype)
    order = ["x", "router", "fc1_w", "fc1_s", "fc1_b" if bias else "", "fc2_w", "fc2_s", "fc2_b" if bias else ""]
    if zp:
        order += ["", "", "", "fc1_z", "fc2_z"]
    attrs = {"k": int(rng.integers(1, E + 1)), "activation_type": act, "expert_weight_bits": bits,
             "normalize_routing_weights": int(rng.integers(0, 2))}
    if block:
        attrs["block_size"] = block
    if act == "swiglu":
        attrs["swiglu_fusion"] = 1
        if rng.random() < 0.5:
            attrs.update(activation_alpha=1.702, activation_beta=1.0, swiglu_limit=float(rng.choice([2.0, 7.0])))
    tol = 2e-2 if (bits == 8 and block) else 2e-3 if dtype == np.float16 else 1e-5
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
