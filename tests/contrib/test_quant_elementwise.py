"""QLinearAdd, QLinearMul, QLinearSigmoid, QLinearLeakyRelu, QLinearSoftmax, QLinearWhere and
QLinearConcat against onnxruntime over seeded random configurations (signedness, scales, zero
points, broadcasting, axes).  onnxruntime computes several through lookup tables or fixed point,
so outputs may be one quantization step apart; everything else must agree."""
from __future__ import annotations

import numpy as np
import pytest

from support.quant_oracle import assert_close, model, rng_for, run_both

N_CASES = 16


def _q(rng, shape, signed):
    return rng.integers(-128, 128, shape).astype(np.int8) if signed else rng.integers(0, 256, shape).astype(np.uint8)


def _params(rng, signed, prefix):
    return {f"{prefix}_scale": np.float32(rng.random() * 0.1 + 0.005),
            f"{prefix}_zp": _q(rng, (), signed)}


def _shape(rng):
    return tuple(int(v) for v in rng.integers(1, 6, int(rng.integers(1, 5))))


@pytest.mark.parametrize("op", ["QLinearAdd", "QLinearMul"])
@pytest.mark.parametrize("i", range(N_CASES))
def test_binary(op, i):
    rng = rng_for(op, i)
    signed = bool(i % 2)
    shape = _shape(rng)
    bshape = shape[int(rng.integers(0, len(shape))):] if i % 3 == 0 else shape
    A, B = _q(rng, shape, signed), _q(rng, bshape, signed)
    consts = {**_params(rng, signed, "a"), **_params(rng, signed, "b"), **_params(rng, signed, "c")}
    order = ["A", "a_scale", "a_zp", "B", "b_scale", "b_zp", "c_scale", "c_zp"]
    feeds = {"A": A, "B": B}
    got, want = run_both(model(op, order, feeds, consts), feeds)
    assert_close(got, want, steps=1, what=f"{op} case {i}")


@pytest.mark.parametrize("op", ["QLinearSigmoid", "QLinearLeakyRelu"])
@pytest.mark.parametrize("i", range(N_CASES))
def test_unary(op, i):
    rng = rng_for(op, i)
    signed = bool(i % 2)
    X = _q(rng, _shape(rng), signed)
    consts = {**_params(rng, signed, "x"), **_params(rng, signed, "y")}
    consts["y_scale"] = np.float32(1 / 256 if op == "QLinearSigmoid" else consts["y_scale"])
    attrs = {"alpha": float(rng.choice([0.01, 0.2, 1.5]))} if op == "QLinearLeakyRelu" else {}
    feeds = {"X": X}
    got, want = run_both(model(op, ["X", "x_scale", "x_zp", "y_scale", "y_zp"], feeds, consts, attrs=attrs), feeds)
    assert_close(got, want, steps=0, what=f"{op} case {i}")


@pytest.mark.parametrize("i", range(N_CASES))
def test_softmax(i):
    rng = rng_for("QLinearSoftmax", i)
    signed = bool(i % 2)
    shape = _shape(rng)
    X = _q(rng, shape, signed)
    opset = 13 if i % 3 else 12
    axis = int(rng.integers(-len(shape), len(shape)))
    # onnxruntime's kernel wants the output in [0, 1]: scale 1/256, zero point 0 (uint8) or -128 (int8)
    consts = {"x_scale": np.float32(rng.random() * 0.1 + 0.01), "x_zp": _q(rng, (), signed),
              "y_scale": np.float32(1 / 256), "y_zp": np.asarray(-128 if signed else 0, X.dtype)}
    feeds = {"X": X}
    m = model("QLinearSoftmax", ["X", "x_scale", "x_zp", "y_scale", "y_zp"], feeds, consts,
              attrs={"axis": axis, "opset": opset})
    got, want = run_both(m, feeds)
    assert_close(got, want, steps=1, what=f"case {i}: axis {axis} opset {opset} shape {shape}")


@pytest.mark.parametrize("i", range(N_CASES))
def test_where(i):
    rng = rng_for("QLinearWhere", i)
    signed = bool(i % 2)
    shape = _shape(rng)
    cond = rng.random(shape[int(rng.integers(0, len(shape))):]) < 0.5
    X, Y = _q(rng, shape, signed), _q(rng, shape[1:] if len(shape) > 1 and i % 3 == 0 else shape, signed)
    consts = {**_params(rng, signed, "x"), **_params(rng, signed, "y"), **_params(rng, signed, "z")}
    if i % 4 == 0:  # X already in Z's parameters
        consts["z_scale"], consts["z_zp"] = consts["x_scale"], consts["x_zp"]
    order = ["cond", "X", "x_scale", "x_zp", "Y", "y_scale", "y_zp", "z_scale", "z_zp"]
    feeds = {"cond": cond, "X": X, "Y": Y}
    got, want = run_both(model("QLinearWhere", order, feeds, consts), feeds)
    assert_close(got, want, steps=1, what=f"case {i}")


@pytest.mark.parametrize("i", range(N_CASES))
def test_concat(i):
    rng = rng_for("QLinearConcat", i)
    signed = bool(i % 2)
    shape = list(_shape(rng))
    axis = int(rng.integers(-len(shape), len(shape)))
    consts = _params(rng, signed, "y")
    order, feeds = ["y_scale", "y_zp"], {}
    for k in range(int(rng.integers(1, 4))):
        s = list(shape)
        s[axis] = int(rng.integers(1, 4))
        feeds[f"x{k}"] = _q(rng, tuple(s), signed)
        p = _params(rng, signed, f"x{k}") if rng.random() < 0.7 else \
            {f"x{k}_scale": consts["y_scale"], f"x{k}_zp": consts["y_zp"]}
        consts.update(p)
        order += [f"x{k}", f"x{k}_scale", f"x{k}_zp"]
    got, want = run_both(model("QLinearConcat", order, feeds, consts, attrs={"axis": axis}), feeds)
    assert_close(got, want, steps=1, what=f"case {i}: axis {axis}")
