"""The compiled transformer bodies (providers/cpu/{half,gelu,norm,softmax}_compiled.py) against
onnxruntime and against ortgpu's own NumPy bodies (ORTGPU_JIT=0): GELU (erf, tanh, with bias),
LayerNormalization, SkipLayerNormalization (+ its sum output), EmbedLayerNormalization, Softmax,
Attention, and the float16 <-> float32 conversion used by Cast, float16 MatMul / Gemm / Add and
the float16 paths of the others (checked bit for bit against NumPy on every half value)."""
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import ortgpu
from ortgpu.providers.cpu import half_compiled, jit
from ortgpu.threads import BUDGET, available_cores

pytestmark = pytest.mark.skipif(not jit.enabled(), reason="numba is not installed or ORTGPU_JIT=0")

MS = "com.microsoft"
F32, F16 = np.float32, np.float16


def _bits(a):
    return np.asarray(a).view(np.uint16 if a.dtype == F16 else np.uint32)


# ------------------------------------------------------------------ float16 <-> float32

def test_every_half_widens_to_numpys_float_bit_for_bit():
    halves = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(F16)
    got = half_compiled.half_to_float(halves)
    np.testing.assert_array_equal(_bits(got), _bits(halves.astype(F32)))


def _float_cases():
    """float32 values at every rounding decision of float32 -> float16: each half value, the
    midpoints between neighbours (ties to even) and one float32 ulp either side, the overflow
    edge, float32 subnormals, NaNs whose payload shifts out, random bit patterns."""
    halves = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(F16)
    finite = np.sort(np.unique(halves[np.isfinite(halves)].astype(np.float64)))
    mids = ((finite[1:] + finite[:-1]) / 2).astype(F32)   # exact in float32
    near = np.concatenate([np.nextafter(mids, np.float32(np.inf)), np.nextafter(mids, np.float32(-np.inf))])
    edge = np.array([65504, 65519, 65519.996, 65520, 65536, 1e30, np.inf, -np.inf, 2.0 ** -25, 2.0 ** -26,
                     -(2.0 ** -25) * 1.0000001, 2.0 ** -14, 2.0 ** -14 * (1 - 2 ** -12)], dtype=F32)
    nan_bits = np.array([0x7F800001, 0x7FC00000, 0x7F802000, 0xFF800001, 0x7FBFFFFF, 0x7F801FFF, 0xFFFFFFFF,
                         0x00000001, 0x80000001, 0x007FFFFF], dtype=np.uint32).view(F32)
    rand = np.random.default_rng(0).integers(0, 1 << 32, size=400_000, dtype=np.uint64).astype(np.uint32).view(F32)
    return np.concatenate([halves.astype(F32), mids, near, edge, nan_bits, rand])


def test_floats_round_to_numpys_half_bit_for_bit():
    x = _float_cases()
    with np.errstate(all="ignore"):
        want = x.astype(F16)
    np.testing.assert_array_equal(_bits(half_compiled.float_to_half(x)), _bits(want))


def test_conversion_keeps_shape_and_takes_strided_input():
    x = np.random.default_rng(1).standard_normal((6, 80, 30)).astype(F32)[:, ::2, 1:]   # 6960 elements: compiled both ways
    h = half_compiled.convert(x, F16)
    assert h.shape == x.shape and h.dtype == F16
    np.testing.assert_array_equal(_bits(h), _bits(x.astype(F16)))
    np.testing.assert_array_equal(_bits(half_compiled.convert(h, F32)), _bits(h.astype(F32)))


# ------------------------------------------------------------------ one-node models

def _model(op, domain, feeds, attrs=None, outputs=1, opset=17, out_types=None):
    names = list(feeds)
    node = helper.make_node(op, names, [f"y{i}" for i in range(outputs)], domain=domain or "", **(attrs or {}))
    first = helper.np_dtype_to_tensor_dtype(next(iter(feeds.values())).dtype)
    types = out_types or [first] * outputs
    g = helper.make_graph(
        [node], op,
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in feeds.items()],
        [helper.make_tensor_value_info(f"y{i}", t, None) for i, t in enumerate(types)])
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(g, opset_imports=opsets, ir_version=10).SerializeToString()


def _run_ortgpu(model, feeds):
    return ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)


def check(model, feeds, monkeypatch, tol):
    """ortgpu (compiled) against onnxruntime within `tol` (rtol = atol), and against ortgpu's NumPy
    bodies (ORTGPU_JIT=0) within a few float32 ulps (or one float16 ulp)."""
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)
    got = _run_ortgpu(model, feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=tol, atol=tol)
    monkeypatch.setenv("ORTGPU_JIT", "0")
    assert not jit.enabled()
    plain = _run_ortgpu(model, feeds)
    monkeypatch.delenv("ORTGPU_JIT")
    for g, p in zip(got, plain):
        close = 2e-3 if g.dtype == F16 else 2e-5
        np.testing.assert_allclose(g.astype(np.float64), p.astype(np.float64), rtol=close, atol=close)
    return got


def _rand(shape, dtype=F32, scale=1.0, seed=0):
    return (np.random.default_rng(seed + sum(shape)).standard_normal(shape) * scale).astype(dtype)


SHAPES = [(3, 7, 33), (2, 5, 129), (1, 1, 1), (4, 32, 128), (5, 3000)]


# ------------------------------------------------------------------ GELU family

@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [F32, F16], ids=["f32", "f16"])
def test_bias_gelu(shape, dtype, monkeypatch):
    feeds = {"A": _rand(shape, dtype, 3), "B": _rand(shape[-1:], dtype, seed=1)}
    check(_model("BiasGelu", MS, feeds), feeds, monkeypatch, 1e-5 if dtype == F32 else 4e-3)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", [F32, F16], ids=["f32", "f16"])
def test_fast_gelu(shape, bias, dtype, monkeypatch):
    feeds = {"X": _rand(shape, dtype, 3)}
    if bias:
        feeds["bias"] = _rand(shape[-1:], dtype, seed=2)
    check(_model("FastGelu", MS, feeds), feeds, monkeypatch, 1e-5 if dtype == F32 else 4e-3)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype", [F32, F16], ids=["f32", "f16"])
def test_gelu_20_and_contrib_gelu(approximate, dtype, monkeypatch):
    x = _rand((3, 11, 65), dtype, 4)
    x.ravel()[:5] = [np.inf, -np.inf, np.nan, 0, -30]
    check(_model("Gelu", "", {"X": x}, {"approximate": approximate}, opset=20), {"X": x}, monkeypatch,
          1e-5 if dtype == F32 else 4e-3)
    if approximate == "none":
        check(_model("Gelu", MS, {"X": x}), {"X": x}, monkeypatch, 1e-5 if dtype == F32 else 4e-3)


def test_gelu_tails_against_float64():
    """Far into the negative tail, where 0.5 x erfc(-x / sqrt 2) is tiny, the compiled erf form
    keeps its relative accuracy (no cancellation), and the tanh form its limit."""
    from scipy.special import erfc
    from ortgpu.providers.cpu.gelu_compiled import gelu
    x = np.linspace(-12, 12, 4001, dtype=F32)
    v = x.astype(np.float64)
    want = 0.5 * v * erfc(-v / np.sqrt(2))
    got = gelu(x, None, "none")
    keep = np.abs(want) > 1e-30
    assert np.max(np.abs(got[keep] - want[keep]) / np.abs(want[keep])) < 2e-5
    tanh_want = 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))
    np.testing.assert_allclose(gelu(x, None, "tanh"), tanh_want, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ layer normalizations

@pytest.mark.parametrize("shape,axis", [((3, 7, 33), -1), ((2, 5, 129), -1), ((4, 6, 10), 1), ((5, 1), -1),
                                        ((4, 32, 32), -1)], ids=str)
@pytest.mark.parametrize("dtype", [F32, F16], ids=["f32", "f16"])
def test_layer_normalization_17(shape, axis, dtype, monkeypatch):
    norm = shape[axis:] if axis != -1 else shape[-1:]
    feeds = {"X": _rand(shape, dtype, 2) + dtype(3), "Scale": _rand(norm, dtype, seed=3),
             "B": _rand(norm, dtype, seed=4)}
    model = _model("LayerNormalization", "", feeds, {"axis": axis, "epsilon": 1e-3}, outputs=3,
                   out_types=[helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), TensorProto.FLOAT, TensorProto.FLOAT])
    check(model, feeds, monkeypatch, 1e-4 if dtype == F32 else 1e-2)


def test_layer_normalization_without_bias_and_opset_1_form(monkeypatch):
    x = _rand((3, 9, 47), scale=5)
    feeds = {"X": x, "Scale": _rand((47,), seed=5)}
    check(_model("LayerNormalization", "", feeds, {"epsilon": 1e-5}), feeds, monkeypatch, 1e-4)
    # onnxruntime's LayerNormalization for opsets before 17 (ai.onnx domain)
    check(_model("LayerNormalization", "", feeds, {"epsilon": 1e-5}, opset=16), feeds, monkeypatch, 1e-4)


@pytest.mark.parametrize("skip_shape", ["same", "seq", "batch1"])
@pytest.mark.parametrize("dtype", [F32, F16], ids=["f32", "f16"])
@pytest.mark.parametrize("eps", [1e-12, 1e-2])
def test_skip_layer_normalization_with_all_outputs(skip_shape, dtype, eps, monkeypatch):
    b, s, h = 3, 7, 45
    skip = {"same": (b, s, h), "seq": (s, h), "batch1": (1, s, h)}[skip_shape]
    feeds = {"input": _rand((b, s, h), dtype, 2), "skip": _rand(skip, dtype, seed=6), "gamma": _rand((h,), dtype, seed=7),
             "beta": _rand((h,), dtype, seed=8), "bias": _rand((h,), dtype, seed=9)}
    t = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    model = _model("SkipLayerNormalization", MS, feeds, {"epsilon": eps}, outputs=4,
                   out_types=[t, TensorProto.FLOAT, TensorProto.FLOAT, t])
    y, mean, inv, total = check(model, feeds, monkeypatch, 1e-4 if dtype == F32 else 1e-2)
    assert mean.shape == inv.shape == (b, s, 1) and total.shape == (b, s, h)


@pytest.mark.parametrize("dtype", [F32, F16], ids=["f32", "f16"])
def test_skip_layer_normalization_one_output_no_beta_no_bias_and_2d(dtype, monkeypatch):
    feeds = {"input": _rand((10, 31), dtype), "skip": _rand((10, 31), dtype, seed=1), "gamma": _rand((31,), dtype, seed=2)}
    check(_model("SkipLayerNormalization", MS, feeds), feeds, monkeypatch, 1e-4 if dtype == F32 else 1e-2)
    check(_model("SkipSimplifiedLayerNormalization", MS, feeds), feeds, monkeypatch,
          1e-4 if dtype == F32 else 1e-2)


def _embed_feeds(b, s, h, segment=True, positions=False, mask=True, seed=0):
    rng = np.random.default_rng(seed)
    feeds = {"input_ids": rng.integers(0, 50, (b, s)).astype(np.int32),
             "segment_ids": rng.integers(0, 2, (b, s)).astype(np.int32) if segment else None,
             "word_embedding": _rand((50, h), seed=seed + 1), "position_embedding": _rand((s + 3, h), seed=seed + 2),
             "segment_embedding": _rand((2, h), seed=seed + 3) if segment else None,
             "gamma": _rand((h,), seed=seed + 4), "beta": _rand((h,), seed=seed + 5),
             "mask": (rng.random((b, s)) > 0.3).astype(np.int32) if mask else None}
    if positions:
        feeds["position_ids"] = rng.integers(0, s + 3, (b, s)).astype(np.int32)
    return feeds


def _embed_model(feeds, outputs):
    names = ["input_ids", "segment_ids", "word_embedding", "position_embedding", "segment_embedding", "gamma",
             "beta", "mask", "position_ids"]
    present = {n: feeds[n] for n in names if feeds.get(n) is not None}
    node = helper.make_node("EmbedLayerNormalization", [n if feeds.get(n) is not None else "" for n in names],
                            ["y", "mask_index", "sum"][:outputs], domain=MS, epsilon=1e-5)
    g = helper.make_graph(
        [node], "embed",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in present.items()],
        [helper.make_tensor_value_info(n, t, None) for n, t in
         zip(["y", "mask_index", "sum"][:outputs], [TensorProto.FLOAT, TensorProto.INT32, TensorProto.FLOAT])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)],
                              ir_version=10).SerializeToString()
    return model, present


@pytest.mark.parametrize("segment,positions,outputs", [(True, False, 3), (False, False, 2), (True, True, 3),
                                                       (True, False, 2)])
@pytest.mark.parametrize("size", [(2, 9, 37), (4, 32, 32), (1, 1, 8)], ids=str)
def test_embed_layer_normalization(segment, positions, outputs, size, monkeypatch):
    feeds = _embed_feeds(*size, segment=segment, positions=positions)
    model, present = _embed_model(feeds, outputs)
    check(model, present, monkeypatch, 1e-4)


@pytest.mark.parametrize("jit_on", ["1", "0"])
def test_embed_layer_normalization_index_out_of_range_is_named(jit_on, monkeypatch):
    monkeypatch.setenv("ORTGPU_JIT", jit_on)
    feeds = _embed_feeds(2, 5, 16)
    feeds["input_ids"][1, 3] = 50
    model, present = _embed_model(feeds, 2)
    with pytest.raises(Exception, match="input_ids.*outside \\[0, 50\\).*50"):
        _run_ortgpu(model, present)
    feeds = _embed_feeds(2, 5, 16)
    feeds["segment_ids"][0, 0] = -1
    model, present = _embed_model(feeds, 2)
    with pytest.raises(Exception, match="segment_ids.*outside \\[0, 2\\)"):
        _run_ortgpu(model, present)
    feeds = _embed_feeds(2, 5, 16, positions=True)
    feeds["position_ids"][1, 4] = 8
    model, present = _embed_model(feeds, 2)
    with pytest.raises(Exception, match="position_ids.*outside \\[0, 8\\).*8"):
        _run_ortgpu(model, present)


# ------------------------------------------------------------------ softmax and attention

@pytest.mark.parametrize("shape", [(4, 2, 32, 32), (3, 5, 17), (2, 3000), (1, 1)], ids=str)
@pytest.mark.parametrize("dtype", [F32, F16], ids=["f32", "f16"])
def test_softmax_last_axis(shape, dtype, monkeypatch):
    x = _rand(shape, dtype, 4)
    check(_model("Softmax", "", {"x": x}, {"axis": -1}), {"x": x}, monkeypatch, 1e-6 if dtype == F32 else 1e-3)


def test_softmax_trailing_axes_of_opset_11_and_special_rows(monkeypatch):
    x = _rand((3, 4, 5, 6), scale=3)
    check(_model("Softmax", "", {"x": x}, {"axis": 1}, opset=11), {"x": x}, monkeypatch, 1e-6)
    y = _rand((4, 9), scale=3)
    y[0] = -np.inf
    y[1, 3] = -np.inf
    y[2, 2] = np.nan
    y[3, 5] = np.inf
    model = _model("Softmax", "", {"x": y}, {"axis": -1})
    got = _run_ortgpu(model, {"x": y})[0]
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": y})[0]
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-7)
    monkeypatch.setenv("ORTGPU_JIT", "0")
    plain = _run_ortgpu(model, {"x": y})[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(plain))
    np.testing.assert_allclose(got, plain, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("b,s,hidden,heads", [(4, 32, 32, 2), (2, 7, 24, 3), (1, 1, 8, 1)])
@pytest.mark.parametrize("mask", ["none", "lengths", "2d"])
@pytest.mark.parametrize("unidirectional", [0, 1])
def test_attention(b, s, hidden, heads, mask, unidirectional, monkeypatch):
    feeds = {"input": _rand((b, s, hidden)), "weights": _rand((hidden, 3 * hidden), scale=0.5, seed=1),
             "bias": _rand((3 * hidden,), seed=2)}
    rng = np.random.default_rng(3)
    if mask == "lengths":
        feeds["mask_index"] = rng.integers(1, s + 1, (b,)).astype(np.int32)
    elif mask == "2d":
        m = (rng.random((b, s)) > 0.3).astype(np.int32)
        m[:, 0] = 1
        feeds["mask_index"] = m
    check(_model("Attention", MS, feeds, {"num_heads": heads, "unidirectional": unidirectional}), feeds,
          monkeypatch, 1e-4)


def test_attention_float16(monkeypatch):
    feeds = {"input": _rand((2, 9, 16), F16), "weights": _rand((16, 48), F16, 0.5, seed=1),
             "bias": _rand((48,), F16, seed=2)}
    check(_model("Attention", MS, feeds, {"num_heads": 4}), feeds, monkeypatch, 2e-2)


# ------------------------------------------------------------------ float16 through the conversion

@pytest.mark.parametrize("to", [TensorProto.FLOAT16, TensorProto.FLOAT])
def test_cast_between_half_and_float_matches_onnxruntime_bit_for_bit(to):
    src = _float_cases()[::7] if to == TensorProto.FLOAT16 else \
        np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(F16)
    node = helper.make_node("Cast", ["x"], ["y"], to=to)
    g = helper.make_graph([node], "cast", [helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(src.dtype),
                                                                           src.shape)],
                          [helper.make_tensor_value_info("y", to, None)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)], ir_version=10).SerializeToString()
    got = _run_ortgpu(model, {"x": src})[0]
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": src})[0]
    finite = ~np.isnan(want)
    np.testing.assert_array_equal(_bits(got)[finite], _bits(want)[finite])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))   # NaN payloads: NumPy's rule (see above)


@pytest.mark.parametrize("op,shapes,attrs", [
    ("MatMul", [(4, 32, 128), (128, 32)], {}),
    ("MatMul", [(3, 65, 33), (33, 130)], {}),
    ("Gemm", [(128, 32), (32, 96), (96,)], {}),
    ("Gemm", [(70, 33), (40, 33), (40,)], {"transB": 1, "alpha": 0.5}),
    ("Add", [(4, 32, 128), (4, 32, 128)], {}),
    ("Add", [(4, 32, 128), (128,)], {}),
    ("Mul", [(4, 2, 32, 32), (4, 2, 32, 32)], {}),
    ("Sub", [(40, 77), (40, 77)], {}),
    ("Div", [(40, 77), (77,)], {}),
])
def test_float16_linear_algebra_and_arithmetic(op, shapes, attrs, monkeypatch):
    feeds = {f"x{i}": _rand(s, F16, 2, seed=i) for i, s in enumerate(shapes)}
    if op == "Div":
        feeds["x1"] = (np.abs(feeds["x1"]) + F16(0.5)).astype(F16)
    model = _model(op, "", feeds, attrs)
    got = check(model, feeds, monkeypatch, 2e-2)
    if op != "MatMul" and op != "Gemm":   # one operation, one rounding: NumPy's float16 bits exactly
        monkeypatch.setenv("ORTGPU_JIT", "0")
        np.testing.assert_array_equal(_bits(got[0]), _bits(_run_ortgpu(model, feeds)[0]))


# ------------------------------------------------------------------ threads

@pytest.mark.skipif(available_cores() < 2, reason="one core: nothing to split over")
def test_rows_split_over_threads_give_the_one_thread_result(monkeypatch):
    """Large enough blocks are split over the run's two threads; every body writes the same
    values as one thread writing them all."""
    monkeypatch.setattr(jit, "MIN_WORK_PER_THREAD", 100_000)  # split this size: the point is the result
    calls = []
    real = jit.split_range

    def spy(body, items, work, *args):
        calls.append(min(BUDGET.kernel_threads, items, int(items * work // jit.MIN_WORK_PER_THREAD) or 1))
        return real(body, items, work, *args)

    for mod in ("gelu_compiled", "norm_compiled", "softmax_compiled", "half_compiled"):
        monkeypatch.setattr(f"ortgpu.providers.cpu.{mod}.split_range", spy)
    x = _rand((64, 128, 96), scale=2)
    h = x.shape[-1]
    node_feeds = [
        ("BiasGelu", MS, {"A": x, "B": _rand((h,), seed=1)}, {}),
        ("FastGelu", MS, {"X": x, "bias": _rand((h,), seed=1)}, {}),
        ("SkipLayerNormalization", MS, {"input": x, "skip": _rand(x.shape, seed=2), "gamma": _rand((h,), seed=3)}, {}),
        ("Softmax", "", {"x": x}, {"axis": -1}),
        ("Cast", "", {"x": x}, {"to": TensorProto.FLOAT16}),
    ]
    for op, domain, feeds, attrs in node_feeds:
        model = _model(op, domain, feeds, attrs,
                       out_types=[TensorProto.FLOAT16] if op == "Cast" else None)
        outs = []
        for threads in (1, 2):
            so = ortgpu.SessionOptions()
            so.intra_op_num_threads = threads
            calls.clear()
            outs.append(ortgpu.InferenceSession(model, so, providers=["CPUExecutionProvider"]).run(None, feeds)[0])
            assert max(calls) == threads, (op, calls)
        np.testing.assert_array_equal(outs[0], outs[1])


def test_first_use_from_several_threads_at_once():
    """Bodies of several modules compiled (or loaded from the disk cache) for the first time by
    threads at once: the shared helpers (exp, half blocks) are resolved once, without deadlock."""
    import subprocess
    import sys
    code = """
import threading, numpy as np
from ortgpu.providers.cpu import gelu_compiled, half_compiled, norm_compiled, softmax_compiled
x = np.random.default_rng(0).standard_normal((64, 48)).astype(np.float32)
jobs = [lambda: gelu_compiled.gelu(x, None, "none"), lambda: gelu_compiled.gelu(x, x[0], "tanh"),
        lambda: softmax_compiled.softmax_rows(x, 1), lambda: norm_compiled.layer_norm(x, x[0], None, 1e-5),
        lambda: norm_compiled.skip_layer_norm_half(x.astype(np.float16), x.astype(np.float16), None, x[0], None, 1e-5),
        lambda: half_compiled.half_to_float(np.zeros(9000, np.float16))]
out = [None] * len(jobs)
def run(i):
    out[i] = jobs[i]()
threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
for t in threads: t.start()
for t in threads: t.join(120)
assert all(o is not None for o in out), out
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
