"""The rest of ortgpu.quantization's surface: 4-bit weight-only MatMulNBits against onnxruntime's
MatMulNBitsQuantizer, the node/op filters, the extra options, quantize() with configs,
quant_pre_process, the accuracy report, typed errors, and `ortgpu quantize`."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import numpy_helper

import ortgpu
from ortgpu import quantization as oq
from ortgpu.cli import main as cli_main
from ortgpu.errors import InvalidArgument
import qmodels as Q

SHAPE = (2, 16, 128)


def run(lib, model, feed):
    so = lib.SessionOptions()
    so.graph_optimization_level = lib.GraphOptimizationLevel.ORT_DISABLE_ALL
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return lib.InferenceSession(data, so, providers=["CPUExecutionProvider"]).run(None, feed)[0]


def inits(model):
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


NBITS_MODELS = {"bert": (Q.bert_layer, SHAPE, 6), "gpt2": (Q.gpt2_block, (2, 16, 64), 4)}  # builder, feed, MatMuls


@pytest.mark.parametrize("model_name", list(NBITS_MODELS))
@pytest.mark.parametrize("symmetric,block,level", [(True, 32, None), (False, 32, None), (False, 128, 1),
                                                    (True, 64, 4)])
def test_matmul_nbits_against_onnxruntime(symmetric, block, level, model_name):
    """4-bit weight-only on the BERT layer and the GPT-2 decoder (whose QKV Gemm stays float in
    both tools: their quantizers take MatMul only): codes and zero points bit-identical, sizes
    within 5%, both files in both runtimes, ortgpu's as close to float as onnxruntime's."""
    pytest.importorskip("onnx_ir")
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer as Theirs
    build, shape, count = NBITS_MODELS[model_name]
    model = build()
    ours = oq.MatMulNBitsQuantizer(model, block_size=block, is_symmetric=symmetric, accuracy_level=level)
    ours.process()
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    theirs = Theirs(copy, block_size=block, is_symmetric=symmetric, accuracy_level=level)
    theirs.process()
    a, b = inits(ours.model), inits(theirs.model.model)
    packed = [k for k in b if k.endswith("_Q4")]
    assert len(packed) == count
    for k in b:       # codes and zero points bit-identical, scales to float32 rounding
        assert k in a and a[k].shape == b[k].shape, k
        if a[k].dtype == np.float32 and k.endswith("_scales"):
            np.testing.assert_allclose(a[k], b[k], rtol=1e-6, err_msg=k)
        elif k.endswith("_Q4") or k.endswith("_zero_points"):
            assert np.array_equal(a[k], b[k]), k
    assert [n.op_type for n in ours.model.graph.node].count("MatMulNBits") == count
    sizes = [ours.model.ByteSize(), theirs.model.model.ByteSize()]
    assert abs(sizes[0] - sizes[1]) <= 0.05 * sizes[1], sizes
    feed = Q.Reader("x", shape, 1, seed=3).feeds[0]
    reference = run(onnxruntime, model, feed)
    for tool, m in (("ortgpu", ours.model), ("onnxruntime", theirs.model.model)):
        out = run(onnxruntime, m, feed)
        assert Q.cosine(out, reference) > 0.99, tool
        mine = run(ortgpu, m, feed)
        if level != 4:    # accuracy_level 4 makes onnxruntime quantize activations to int8 (docs/design.md)
            # float outputs (no output step): the same dequantized weights, float32 sums in two orders
            np.testing.assert_allclose(mine, out, rtol=0, atol=1e-5 * max(1.0, np.abs(out).max()), err_msg=tool)
        else:             # ortgpu computes in float32: at least as close to the float model
            assert Q.cosine(mine, reference) >= Q.cosine(out, reference) - 1e-4, tool
    assert Q.cosine(run(onnxruntime, ours.model, feed), reference) >= \
        Q.cosine(run(onnxruntime, theirs.model.model, feed), reference) - 1e-6


def test_nbits_rejects_bad_block_size():
    with pytest.raises(InvalidArgument, match="block_size"):
        oq.MatMulNBitsQuantizer(Q.mlp(), block_size=24).process()


def _static(tmp_path, **kw):
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(Q.bert_layer(), src)
    oq.quantize_static(str(src), str(dst), Q.Reader("x", SHAPE), **kw)
    return onnx.load(dst)


def _quantized_weights(model):
    return {k.removesuffix("_quantized") for k in inits(model) if k.endswith("_quantized")}


def test_nodes_to_exclude_and_op_types(tmp_path):
    full = _quantized_weights(_static(tmp_path))
    assert {"wq", "wk", "wv", "wo", "w1", "w2"} <= full
    excluded = _quantized_weights(_static(tmp_path, nodes_to_exclude=["mm_f1", "mm_q"]))
    assert "w1" not in excluded and "wq" not in excluded and "w2" in excluded
    only = _quantized_weights(_static(tmp_path, nodes_to_quantize=["mm_o"]))
    assert only == {"wo"}
    mm_only = _static(tmp_path, op_types_to_quantize=["MatMul"])
    ops = [n.op_type for n in mm_only.graph.node]
    # Softmax and LayerNormalization outputs are quantized only where a MatMul reads or writes them
    assert ops.count("QuantizeLinear") == len({n.input[0] for n in mm_only.graph.node if n.op_type == "QuantizeLinear"})
    assert "ln2_scale" not in inits(mm_only) and "y_scale" not in inits(mm_only)


def test_matmul_const_b_only(tmp_path):
    """The attention score MatMuls (both operands activations) lose their Q/DQ inputs."""
    def qdq_inputs(model, node_name):
        node = next(n for n in model.graph.node if n.name == node_name)
        return [x for x in node.input if x.endswith("_DequantizeLinear_Output")]
    full = _static(tmp_path, op_types_to_quantize=["MatMul"])
    const_only = _static(tmp_path, op_types_to_quantize=["MatMul"], extra_options={"MatMulConstBOnly": True})
    assert len(qdq_inputs(full, "mm_qk")) == 2 and qdq_inputs(const_only, "mm_qk") == []
    assert len(qdq_inputs(const_only, "mm_o")) == 2


def test_weight_symmetric_and_activation_symmetric_options(tmp_path):
    m = _static(tmp_path, activation_type=oq.QuantType.QUInt8, weight_type=oq.QuantType.QUInt8,
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": True})
    i = inits(m)
    assert int(i["wq_zero_point"]) == 128 and int(i["x_zero_point"]) == 128
    m2 = _static(tmp_path, activation_type=oq.QuantType.QUInt8, weight_type=oq.QuantType.QUInt8)
    assert int(inits(m2)["wq_zero_point"]) != 128


def test_moving_average_and_symmetric_range_options(tmp_path):
    plain = inits(_static(tmp_path, activation_type=oq.QuantType.QUInt8))
    moving = inits(_static(tmp_path, activation_type=oq.QuantType.QUInt8,
                           extra_options={"CalibMovingAverage": True, "CalibMovingAverageConstant": 0.5}))
    sym = inits(_static(tmp_path, activation_type=oq.QuantType.QUInt8, extra_options={"CalibTensorRangeSymmetric": True}))
    assert moving["x_scale"] < plain["x_scale"]        # the average of batch extremes is inside the overall one
    assert int(sym["x_zero_point"]) == 128


def test_quantize_with_configs(tmp_path):
    src = tmp_path / "f.onnx"
    onnx.save(Q.mlp(), src)
    oq.quantize(str(src), str(tmp_path / "s.onnx"), oq.StaticQuantConfig(Q.Reader("x", (8, 128)), per_channel=True))
    oq.quantize(str(src), str(tmp_path / "d.onnx"), oq.DynamicQuantConfig())
    s, d = onnx.load(tmp_path / "s.onnx"), onnx.load(tmp_path / "d.onnx")
    assert inits(s)["w1_scale"].shape == (256,)
    assert "MatMulInteger" in [n.op_type for n in d.graph.node]
    with pytest.raises(InvalidArgument, match="quant_config"):
        oq.quantize(str(src), str(tmp_path / "x.onnx"), object())


def test_errors_name_the_argument(tmp_path):
    src = tmp_path / "f.onnx"
    onnx.save(Q.mlp(), src)

    class Empty(oq.CalibrationDataReader):
        def get_next(self):
            return None
    with pytest.raises(InvalidArgument, match="calibration_data_reader"):
        oq.quantize_static(str(src), str(tmp_path / "q.onnx"), Empty())
    with pytest.raises(InvalidArgument, match="quant_format"):
        oq.quantize_static(str(src), str(tmp_path / "q.onnx"), Q.Reader("x", (8, 128)), quant_format="QDQX")
    with pytest.raises(InvalidArgument, match="weight_type"):
        oq.quantize_dynamic(str(src), str(tmp_path / "q.onnx"), weight_type=oq.QuantType.QInt4)


def test_quant_pre_process_keeps_results(tmp_path):
    src, pre = tmp_path / "f.onnx", tmp_path / "p.onnx"
    onnx.save(Q.resnet_cnn(), src)
    oq.quant_pre_process(str(src), str(pre))
    m = onnx.load(pre)
    assert len(m.graph.value_info) > 0      # every intermediate typed for calibration
    feed = Q.Reader("x", (2, 3, 32, 32), 1).feeds[0]
    np.testing.assert_allclose(run(onnxruntime, pre, feed), run(onnxruntime, src, feed), rtol=1e-4, atol=1e-5)


def test_accuracy_report_matches_onnxruntime_intermediates(tmp_path):
    """The report's per-tensor error equals the error computed from onnxruntime's own run of the
    same QDQ model (the float tensor and its Q->DQ copy)."""
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(Q.bert_layer(), src)
    oq.quantize_static(str(src), str(dst), Q.Reader("x", SHAPE), activation_type=oq.QuantType.QUInt8)
    rows = oq.qdq_error_report(str(src), str(dst), Q.Reader("x", SHAPE, 2))
    assert len(rows) > 10 and rows == sorted(rows, key=lambda r: -r["relative_rms_error"])
    worst = rows[0]
    assert worst["relative_rms_error"] > 0 and worst["cosine"] < 1
    m = onnx.load(dst)
    pair = next(n.output[0] for n in m.graph.node if n.op_type == "DequantizeLinear"
                and n.input[0] == f"{worst['tensor']}_QuantizeLinear_Output")
    for name in (worst["tensor"], pair):
        m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    so = onnxruntime.SessionOptions()
    so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = onnxruntime.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    a, b = [], []
    for feed in Q.Reader("x", SHAPE, 2).feeds:
        x, y = sess.run([worst["tensor"], pair], feed)
        a.append(x.ravel()), b.append(y.ravel())
    a, b = np.concatenate(a), np.concatenate(b)
    expected = np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(a ** 2))
    assert worst["relative_rms_error"] == pytest.approx(expected, rel=1e-3)
    text = oq.format_report(rows)
    assert worst["tensor"][:40] in text


@pytest.mark.parametrize("args", [["--mode", "dynamic"], ["--mode", "static", "--format", "QOperator", "--per-channel"],
                                  ["--mode", "static", "--report"], ["--mode", "int4", "--block-size", "32"]])
def test_cli_quantize(args, tmp_path, capsys):
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(Q.mlp(), src)
    assert cli_main(["quantize", str(src), str(dst), *args]) == 0
    feed = {"x": np.random.default_rng(0).normal(size=(4, 128)).astype(np.float32)}
    out = run(onnxruntime, dst, feed)
    assert Q.cosine(out, run(onnxruntime, src, feed)) > 0.99
    np.testing.assert_allclose(run(ortgpu, dst, feed), out, rtol=0, atol=0.05)
    printed = capsys.readouterr().out
    assert "bytes" in printed
    if "--report" in args:
        assert "rel_rms_err" in printed


def test_rounding_at_half_codes_matches_onnxruntime():
    """The docs/design.md claim behind the PP-OCR differences: fed the same floats, ortgpu's
    QuantizeLinear and DynamicQuantizeLinear give onnxruntime's codes on exact .5 boundaries and
    at saturation."""
    from onnx import TensorProto, helper
    scale = np.float32(0.25)
    x = (np.arange(-300, 300, dtype=np.float32) + 0.5) * scale        # every value is k + 0.5 codes
    x = np.concatenate([x, np.array([1e6, -1e6], np.float32)])[None]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q8"]),
             helper.make_node("QuantizeLinear", ["x", "s", "zu"], ["qu8"]),
             helper.make_node("DynamicQuantizeLinear", ["x"], ["dq", "ds", "dz"])]
    inits = [numpy_helper.from_array(np.array(scale), "s"), numpy_helper.from_array(np.array(3, np.int8), "z"),
             numpy_helper.from_array(np.array(128, np.uint8), "zu")]
    outs = [helper.make_tensor_value_info(n, t, None) for n, t in
            (("q8", TensorProto.INT8), ("qu8", TensorProto.UINT8), ("dq", TensorProto.UINT8),
             ("ds", TensorProto.FLOAT), ("dz", TensorProto.UINT8))]
    m = helper.make_model(helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                                            outs, inits), opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    ours = ortgpu.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    theirs = onnxruntime.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert len(np.unique(theirs[0])) > 100
    for o, t in zip(ours, theirs):
        assert np.array_equal(o, t)
