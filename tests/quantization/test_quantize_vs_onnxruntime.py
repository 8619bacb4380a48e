"""ortgpu.quantization against onnxruntime.quantization (the oracle) under the same settings and
calibration feeds: file sizes within 5%, each file runs in both runtimes, ortgpu's file is as
accurate as onnxruntime's against the float model (cosine within COS_MARGIN, CNN top-1 within one
sample in 64), and every file onnxruntime's tool writes runs on ortgpu within one quantization
step of onnxruntime (optimizations off on both: see docs/design.md on onnxruntime's fused paths)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import numpy_helper
from onnxruntime import quantization as rq

import ortgpu
from ortgpu import quantization as oq
import qmodels as Q

COS_MARGIN = 1e-3          # ortgpu's cosine to float may be at most this much below onnxruntime's
SIZE_MARGIN = 0.05

MODELS = {"mlp": (Q.mlp, (8, 128)), "cnn": (Q.resnet_cnn, (4, 3, 32, 32)), "bert": (Q.bert_layer, (2, 16, 128)),
          "gpt2": (Q.gpt2_block, (2, 16, 64))}
MODES = {
    "dynamic_s8": dict(dynamic=True, weight_type="QInt8"),
    "dynamic_u8": dict(dynamic=True, weight_type="QUInt8"),
    "qdq_u8": dict(quant_format="QDQ", activation_type="QUInt8", weight_type="QInt8"),
    "qdq_s8_perchannel": dict(quant_format="QDQ", activation_type="QInt8", weight_type="QInt8", per_channel=True),
    "qdq_u16": dict(quant_format="QDQ", activation_type="QUInt16", weight_type="QInt16"),
    "qdq_w4": dict(quant_format="QDQ", activation_type="QUInt8", weight_type="QInt4"),
    "qoperator_u8": dict(quant_format="QOperator", activation_type="QUInt8", weight_type="QInt8"),
    "qoperator_s8_perchannel_rr": dict(quant_format="QOperator", activation_type="QUInt8", weight_type="QInt8",
                                       per_channel=True, reduce_range=True),
}


def _kwargs(lib, mode):
    kw = {}
    for k, v in mode.items():
        if k.endswith("_type"):
            kw[k] = getattr(lib.QuantType, v)
        elif k == "quant_format":
            kw[k] = getattr(lib.QuantFormat, v)
        elif k != "dynamic":
            kw[k] = v
    return kw


def quantize_with(lib, src, dst, mode, shape):
    kw = _kwargs(lib, mode)
    if mode.get("dynamic"):
        lib.quantize_dynamic(str(src), str(dst), **kw)
    else:
        lib.quantize_static(str(src), str(dst), Q.Reader("x", shape), **kw)


def run(lib, path, feed, optimize=False):
    so = lib.SessionOptions()
    so.graph_optimization_level = (lib.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else lib.GraphOptimizationLevel.ORT_DISABLE_ALL)
    return lib.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, feed)[0]


def output_step(path) -> float:
    """Scale of the DequantizeLinear that makes the graph output (the step of one code), or the
    largest activation scale for a dynamic model whose output is a float rescale."""
    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    out = m.graph.output[0].name
    for n in m.graph.node:
        if out in n.output and n.op_type == "DequantizeLinear":
            return float(np.max(inits[n.input[1]]))
    return 0.0


def assert_one_step(path, feed, ort_out=None):
    """The file runs on ortgpu within one output step of onnxruntime (optimizations off on both),
    plus the float-summation-order term explained in test_against_onnxruntime_tool."""
    ort_out = run(onnxruntime, path, feed) if ort_out is None else ort_out
    tol = 1.01 * output_step(path) + 2.5e-4 * np.abs(ort_out).max()
    np.testing.assert_allclose(run(ortgpu, path, feed), ort_out, rtol=0, atol=tol, err_msg=f"{path} on ortgpu")
    return ort_out


@pytest.fixture(scope="module")
def float_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("float")
    paths = {}
    for name, (build, _) in MODELS.items():
        paths[name] = d / f"{name}.onnx"
        onnx.save(build(), paths[name])
    return paths


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("model", list(MODELS))
def test_against_onnxruntime_tool(model, mode, float_models, tmp_path):
    src, shape = float_models[model], MODELS[model][1]
    feed = Q.Reader("x", shape, 1, seed=9).feeds[0]
    reference = run(onnxruntime, src, feed)
    files = {}
    for tag, lib in (("ortgpu", oq), ("onnxruntime", rq)):
        files[tag] = tmp_path / f"{tag}.onnx"
        quantize_with(lib, src, files[tag], MODES[mode], shape)
    sizes = {t: p.stat().st_size for t, p in files.items()}
    assert abs(sizes["ortgpu"] - sizes["onnxruntime"]) <= SIZE_MARGIN * sizes["onnxruntime"], sizes
    outs = {(t, rt): run(lib, p, feed) for t, p in files.items() for rt, lib in (("ort", onnxruntime), ("ortgpu", ortgpu))}
    cos = {t: Q.cosine(outs[(t, "ort")], reference) for t in files}
    assert cos["ortgpu"] >= cos["onnxruntime"] - COS_MARGIN, cos
    for t, p in files.items():
        step = output_step(p)
        # one output step, plus float-summation-order noise: the two runtimes add the same
        # dequantized products in different orders, and at 16 bits that can move an upstream
        # code by one step (a relative 1e-4 at most on these models)
        tol = 1.01 * step + 2.5e-4 * np.abs(outs[(t, "ort")]).max()
        np.testing.assert_allclose(outs[(t, "ortgpu")], outs[(t, "ort")], rtol=0, atol=tol,
                                   err_msg=f"{t}'s file on ortgpu vs onnxruntime")


def test_cnn_top1_matches_onnxruntime_tool(float_models, tmp_path):
    src = float_models["cnn"]
    x = np.random.default_rng(5).normal(size=(64, 3, 32, 32)).astype(np.float32)
    top_float = run(onnxruntime, src, {"x": x}).argmax(1)
    agree = {}
    for tag, lib in (("ortgpu", oq), ("onnxruntime", rq)):
        dst = tmp_path / f"{tag}.onnx"
        quantize_with(lib, src, dst, MODES["qdq_s8_perchannel"], (4, 3, 32, 32))
        out = assert_one_step(dst, {"x": x})
        agree[tag] = int((out.argmax(1) == top_float).sum())
    assert agree["ortgpu"] >= agree["onnxruntime"] - 1, agree


def test_minmax_scales_equal_onnxruntime(float_models, tmp_path):
    """Same calibration feeds and MinMax: the activation and weight scales of both files agree."""
    src, shape = float_models["mlp"], MODELS["mlp"][1]
    scales = {}
    for tag, lib in (("ortgpu", oq), ("onnxruntime", rq)):
        dst = tmp_path / f"{tag}.onnx"
        quantize_with(lib, src, dst, MODES["qdq_u8"], shape)
        assert_one_step(dst, Q.Reader("x", shape, 1, seed=9).feeds[0])
        scales[tag] = {i.name: numpy_helper.to_array(i) for i in onnx.load(dst).graph.initializer
                       if i.name.endswith("_scale") or i.name.endswith("_zero_point")}
    common = sorted(set(scales["ortgpu"]) & set(scales["onnxruntime"]))
    assert {"x_scale", "w1_scale", "h3_scale", "x_zero_point"} <= set(common)
    for k in common:
        np.testing.assert_allclose(scales["ortgpu"][k].astype(np.float64),
                                   scales["onnxruntime"][k].astype(np.float64), rtol=1e-6, err_msg=k)


@pytest.mark.parametrize("method", ["MinMax", "Entropy", "Percentile"])
def test_calibration_methods_as_accurate(method, float_models, tmp_path):
    src, shape = float_models["bert"], MODELS["bert"][1]
    feed = Q.Reader("x", shape, 1, seed=9).feeds[0]
    reference = run(onnxruntime, src, feed)
    cos = {}
    for tag, lib in (("ortgpu", oq), ("onnxruntime", rq)):
        dst = tmp_path / f"{tag}.onnx"
        lib.quantize_static(str(src), str(dst), Q.Reader("x", shape), calibrate_method=getattr(lib.CalibrationMethod, method),
                            activation_type=lib.QuantType.QUInt8)
        cos[tag] = Q.cosine(assert_one_step(dst, feed), reference)
    assert cos["ortgpu"] >= cos["onnxruntime"] - COS_MARGIN, cos


def test_float8_distribution(float_models, tmp_path):
    """QFLOAT8E4M3FN (onnxruntime's tool takes it with Distribution only): the file raises the
    opset to 19, runs in both runtimes identically, and is no less accurate than onnxruntime's."""
    src, shape = float_models["mlp"], MODELS["mlp"][1]
    feed = Q.Reader("x", shape, 1, seed=9).feeds[0]
    reference = run(onnxruntime, src, feed)
    cos = {}
    for tag, lib in (("ortgpu", oq), ("onnxruntime", rq)):
        dst = tmp_path / f"{tag}.onnx"
        lib.quantize_static(str(src), str(dst), Q.Reader("x", shape), calibrate_method=lib.CalibrationMethod.Distribution,
                            activation_type=lib.QuantType.QFLOAT8E4M3FN, weight_type=lib.QuantType.QFLOAT8E4M3FN)
        out = run(onnxruntime, dst, feed)
        np.testing.assert_allclose(run(ortgpu, dst, feed), out, rtol=0, atol=1e-5 * np.abs(out).max())
        cos[tag] = Q.cosine(out, reference)
    assert cos["ortgpu"] >= cos["onnxruntime"] - COS_MARGIN, cos


@pytest.mark.parametrize("name", ["bert_fp32", "gpt2_fp32"])
def test_transformer_contrib_models_qdq(name, tmp_path):
    """The BERT/GPT-2-shaped random-weight models (fused com.microsoft ops): QDQ with uint8
    activations. onnxruntime's tool cannot type the GPT-2 one (it raises), so there ortgpu's file
    is checked on its own: both runtimes agree and it stays close to the float model."""
    from pathlib import Path
    m = onnx.load(Path(__file__).resolve().parent.parent / "data" / "contrib" / f"{name}.onnx")
    if not any(o.domain == "com.microsoft" for o in m.opset_import):
        m.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    src = tmp_path / "float.onnx"
    onnx.save(m, src)
    names = [i.name for i in m.graph.input]
    reader = lambda n, seed: Q.TokenReader(names, (2, 16), 90, n, seed)
    feed = reader(1, 9).feeds[0]
    reference = run(onnxruntime, src, feed)
    ours = tmp_path / "ortgpu.onnx"
    oq.quantize_static(str(src), str(ours), reader(4, 1), activation_type=oq.QuantType.QUInt8)
    out = run(onnxruntime, ours, feed)
    np.testing.assert_allclose(run(ortgpu, ours, feed), out, rtol=0, atol=max(output_step(ours), 1e-5))
    cos = Q.cosine(out, reference)
    assert cos > 0.999, cos
    if name == "bert_fp32":
        theirs = tmp_path / "onnxruntime.onnx"
        rq.quantize_static(str(src), str(theirs), reader(4, 1), activation_type=rq.QuantType.QUInt8)
        assert abs(ours.stat().st_size - theirs.stat().st_size) <= SIZE_MARGIN * theirs.stat().st_size
        their_out = run(onnxruntime, theirs, feed)
        assert cos >= Q.cosine(their_out, reference) - COS_MARGIN
        np.testing.assert_allclose(run(ortgpu, theirs, feed), their_out, rtol=0,
                                   atol=max(output_step(theirs), 1e-5))
