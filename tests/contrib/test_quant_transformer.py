"""QAttention, QEmbedLayerNormalization and DynamicQuantizeLSTM against onnxruntime over seeded
random configurations (mask forms, causal, past state, per-column weight parameters, segments,
directions)."""
from __future__ import annotations

import numpy as np
import pytest

from support.quant_oracle import assert_close, model, rng_for, run_both

N_CASES = 16


def _q(rng, shape, signed):
    return rng.integers(-128, 128, shape).astype(np.int8) if signed else rng.integers(0, 256, shape).astype(np.uint8)


def _mask(rng, kind, b, s, total):
    if kind == "lengths":
        return rng.integers(1, total + 1, b).astype(np.int32)
    if kind == "end_start":
        end = rng.integers(total // 2 + 1, total + 1, b)
        return np.concatenate([end, rng.integers(0, total // 2 + 1, b)]).astype(np.int32)
    if kind == "raw2d":
        m = (rng.random((b, total)) < 0.8).astype(np.int32)
        m[:, 0] = 1
        return m
    m = (rng.random((b, s, total)) < 0.8).astype(np.int32)
    m[..., 0] = 1
    return m


@pytest.mark.parametrize("i", range(N_CASES))
def test_qattention(i):
    rng = rng_for("QAttention", i)
    b, s = int(rng.integers(1, 3)), int(rng.integers(1, 6))
    heads = int(rng.choice([1, 2, 4]))
    hidden = heads * int(rng.choice([2, 4]))
    d_in = int(rng.integers(2, 9))
    sa, per_col = False, i % 4 < 2  # onnxruntime's CPU kernel takes a uint8 input only
    sw = bool(i % 2)
    causal = int(i % 3 == 0)
    past_len = int(rng.integers(1, 4)) if i % 5 == 1 else 0
    total = s + past_len
    feeds = {"input": _q(rng, (b, s, d_in), sa)}
    consts = {"weight": _q(rng, (d_in, 3 * hidden), sw),
              "bias": rng.normal(size=3 * hidden).astype(np.float32),
              "input_scale": np.float32(0.05),
              "weight_scale": (rng.random(3 * hidden) * 0.05 + 0.01).astype(np.float32) if per_col
              else np.float32(0.03)}
    order = ["input", "weight", "bias", "input_scale", "weight_scale"]
    kind = [None, "lengths", "raw2d", "raw3d", "end_start"][i % 5]
    if kind == "end_start" and causal:
        kind = "lengths"  # onnxruntime drops the start positions of a causal attention's mask
    if kind:
        feeds["mask"] = _mask(rng, kind, b, s, total)
    order.append("mask" if kind else "")
    consts["input_zp"] = _q(rng, (), sa)
    consts["weight_zp"] = _q(rng, (3 * hidden,) if per_col else (), sw)
    order += ["input_zp", "weight_zp"]
    if past_len:
        feeds["past"] = rng.normal(size=(2, b, heads, past_len, hidden // heads)).astype(np.float32)
        order.append("past")
    attrs = {"num_heads": heads, "unidirectional": causal}
    got, want = run_both(model("QAttention", order, feeds, consts, n_outputs=2 if past_len else 1, attrs=attrs), feeds)
    assert_close(got, want, rtol=1e-4, atol=1e-4, what=f"case {i}: mask {kind} causal {causal} past {past_len}")


@pytest.mark.parametrize("i", range(N_CASES))
def test_qembed_layer_normalization(i):
    rng = rng_for("QEmbedLayerNormalization", i)
    b, s, hidden, vocab = int(rng.integers(1, 4)), int(rng.integers(1, 7)), int(rng.choice([4, 8])), 11
    signed = bool(i % 2)
    with_segments, with_mask = i % 3 != 0, i % 4 != 0
    feeds = {"ids": rng.integers(0, vocab, (b, s)).astype(np.int32)}
    consts = {}

    def table(name, shape):
        consts[f"{name}_q"] = _q(rng, shape, signed)
        consts[f"{name}_s"] = np.float32(rng.random() * 0.02 + 0.005)
        consts[f"{name}_z"] = _q(rng, (), signed)

    for name, shape in (("word", (vocab, hidden)), ("pos", (8, hidden)), ("seg", (2, hidden)),
                        ("gamma", (hidden,)), ("beta", (hidden,))):
        if name != "seg" or with_segments:
            table(name, shape)
    if with_segments:
        feeds["seg_ids"] = rng.integers(0, 2, (b, s)).astype(np.int32)
    if with_mask:
        m = (rng.random((b, s)) < 0.7).astype(np.int32)
        feeds["mask"] = m
    seg = with_segments
    order = ["ids", "seg_ids" if seg else "", "word_q", "pos_q", "seg_q" if seg else "", "gamma_q", "beta_q",
             "mask" if with_mask else "", "word_s", "pos_s", "seg_s" if seg else "", "gamma_s", "beta_s",
             "word_z", "pos_z", "seg_z" if seg else "", "gamma_z", "beta_z"]
    got, want = run_both(model("QEmbedLayerNormalization", order, feeds, consts, n_outputs=2,
                               attrs={"epsilon": 1e-5}), feeds)
    assert_close(got, want, rtol=1e-4, atol=1e-4, what=f"case {i}: segments {seg} mask {with_mask}")


@pytest.mark.parametrize("i", range(N_CASES))
def test_dynamic_quantize_lstm(i):
    rng = rng_for("DynamicQuantizeLSTM", i)
    seq, batch, n_in, H = int(rng.integers(1, 5)), int(rng.integers(1, 4)), int(rng.integers(1, 6)), int(rng.integers(1, 5))
    direction = ["forward", "reverse", "bidirectional"][i % 3]
    D = 2 if direction == "bidirectional" else 1
    signed = bool(i % 2)
    per_col = signed and i % 4 < 2  # onnxruntime refuses per-column uint8 zero points here
    pshape = (D, 4 * H) if per_col else (D,)
    feeds = {"X": rng.normal(size=(seq, batch, n_in)).astype(np.float32)}
    consts = {"W": _q(rng, (D, n_in, 4 * H), signed), "R": _q(rng, (D, H, 4 * H), signed),
              "B": (rng.normal(size=(D, 8 * H)) * 0.1).astype(np.float32),
              "W_scale": (rng.random(pshape) * 0.02 + 0.005).astype(np.float32), "W_zp": _q(rng, pshape, signed) * 0,
              "R_scale": (rng.random(pshape) * 0.02 + 0.005).astype(np.float32), "R_zp": _q(rng, pshape, signed) * 0}
    if not signed:  # onnxruntime takes uint8 weights with nonzero zero points only
        consts["W_zp"] = _q(rng, pshape, False)
        consts["R_zp"] = _q(rng, pshape, False)
    order = ["X", "W", "R", "B", "", "", "", "", "W_scale", "W_zp", "R_scale", "R_zp"]
    attrs = {"hidden_size": H, "direction": direction}
    got, want = run_both(model("DynamicQuantizeLSTM", order, feeds, consts, n_outputs=3, attrs=attrs), feeds)
    # onnxruntime quantizes X and the hidden state to uint8 at every step
    assert_close(got, want, rtol=0, atol=5e-2, what=f"case {i}: {attrs}")
