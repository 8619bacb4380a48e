"""ScaledSiLU, GatedAdd, GatedRMSNorm and BranchwiseRMSNorm (com.microsoft ops that onnxruntime
1.32's CPU provider registers beyond its OperatorKernels.md) against onnxruntime's CPU kernels,
over seeded random configurations: float32, float16 and bfloat16, shapes, optional inputs and
attributes.  Tolerances: float32 1e-5; float16 and bfloat16 one unit in the last place of the
output type (both runtimes compute in float32 and round at the steps the schemas name, so at
most a rounding boundary apart).  onnxruntime's Python API cannot feed bfloat16 arrays, so the
bfloat16 cases take float32 feeds through Cast nodes into the op and Cast its output back."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortgpu
from support.quant_oracle import CPU, MS, model, rng_for, run_both

N_CASES = 12
DTYPES = (np.float32, np.float16, ml_dtypes.bfloat16)


def _run(op, order, feeds, consts, attrs=None):
    """(ortgpu's outputs, onnxruntime's) of the op; bfloat16 feeds travel as float32 + Cast."""
    if not any(v.dtype == ml_dtypes.bfloat16 for v in feeds.values()):
        return run_both(model(op, order, feeds, consts, attrs=attrs), feeds)
    f32 = {k: v.astype(np.float32) for k, v in feeds.items()}
    nodes = [helper.make_node("Cast", [k], [f"{k}_bf16"], to=TensorProto.BFLOAT16) for k in feeds]
    ins = [f"{k}_bf16" if k in feeds else k for k in order]
    nodes.append(helper.make_node(op, ins, ["y_bf16"], domain=MS, **(attrs or {})))
    nodes.append(helper.make_node("Cast", ["y_bf16"], ["y"], to=TensorProto.FLOAT))
    g = helper.make_graph(nodes, op, [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape))
                                      for k, v in f32.items()],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid(MS, 1)], ir_version=10)
    # CPU only: the device double (run_both's third run) holds no bfloat16
    got = ortgpu.InferenceSession(m.SerializeToString(), providers=CPU).run(None, f32)
    want = onnxruntime.InferenceSession(m.SerializeToString(), providers=CPU).run(None, f32)
    return [g.astype(ml_dtypes.bfloat16) for g in got], [w.astype(ml_dtypes.bfloat16) for w in want]


def _compare(got, want, dtype):
    (g,), (w,) = got, want
    assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, g.shape, w.dtype, w.shape)
    g, w = g.astype(np.float32), w.astype(np.float32)
    eps = {np.float32: 1e-5, np.float16: 2.0 ** -10, ml_dtypes.bfloat16: 2.0 ** -7}[dtype]
    np.testing.assert_allclose(g, w, rtol=eps, atol=eps * max(1.0, float(np.abs(w).max(initial=0)) * 1e-3))


def _shape(rng, last):
    return tuple(int(v) for v in rng.integers(1, 4, int(rng.integers(0, 3)))) + (last,)


@pytest.mark.parametrize("i", range(N_CASES))
def test_scaled_silu(i):
    rng = rng_for("ScaledSiLU", i)
    dtype = DTYPES[i % 3]
    x = (rng.normal(size=_shape(rng, int(rng.integers(1, 9)))) * 3).astype(dtype)
    consts, order, attrs = {}, ["x"], {}
    if i % 2:
        consts["scale"] = np.array(rng.normal(), dtype=DTYPES[(i // 2) % 3])
        order.append("scale")
    if i % 4 < 2:
        attrs["alpha"] = float(rng.normal())
    got, want = _run("ScaledSiLU", order, {"x": x}, consts, attrs)
    _compare(got, want, dtype)


@pytest.mark.parametrize("i", range(N_CASES))
def test_gated_add(i):
    rng = rng_for("GatedAdd", i)
    dtype = DTYPES[i % 2]          # onnxruntime's CPU GatedAdd: float32 and float16
    shape = _shape(rng, int(rng.integers(1, 9)))
    feeds = {"x": rng.normal(size=shape).astype(dtype), "y": rng.normal(size=shape).astype(dtype),
             "g": rng.normal(size=shape[:-1] + (1,)).astype(dtype)}
    got, want = _run("GatedAdd", ["x", "y", "g"], feeds, {})
    _compare(got, want, dtype)


@pytest.mark.parametrize("i", range(N_CASES))
def test_gated_rms_norm(i):
    rng = rng_for("GatedRMSNorm", i)
    dtype = DTYPES[i % 3]
    c = int(rng.integers(1, 9))
    shape = _shape(rng, c * int(rng.integers(1, 4)))
    feeds = {"x": rng.normal(size=shape).astype(dtype), "gate": rng.normal(size=shape).astype(dtype)}
    consts = {"scale": rng.normal(size=c).astype(dtype)}
    attrs = {"activation": ["silu", "swish", "sigmoid", None][i % 4]}
    if attrs["activation"] is None:
        del attrs["activation"]
    if rng.random() < 0.5:
        attrs["epsilon"] = float(rng.choice([1e-6, 1e-3]))
    got, want = _run("GatedRMSNorm", ["x", "scale", "gate"], feeds, consts, attrs)
    _compare(got, want, dtype)


@pytest.mark.parametrize("i", range(N_CASES))
def test_branchwise_rms_norm(i):
    rng = rng_for("BranchwiseRMSNorm", i)
    dtype = DTYPES[i % 3]
    c, h = int(rng.integers(1, 5)), int(rng.integers(1, 9))
    flat = i % 2 == 1
    lead = tuple(int(v) for v in rng.integers(1, 4, int(rng.integers(0, 3))))
    x = rng.normal(size=lead + ((c * h,) if flat else (c, h))).astype(dtype)
    attrs = {"num_branches": c} if flat else {}
    if rng.random() < 0.5:
        attrs["epsilon"] = 1e-3
    consts, order = {}, ["x"]
    scale_shape = [(c * h,), (c, h), (h,), None][(i // 2) % 4]
    if scale_shape is not None:
        consts["scale"] = rng.normal(size=scale_shape).astype(DTYPES[(i // 3) % 3])
        order.append("scale")
    got, want = _run("BranchwiseRMSNorm", order, {"x": x}, consts, attrs)
    _compare(got, want, dtype)
