"""QDQSelectorActionTransformer: each DQ -> op -> Q group becomes its quantized op and gives the
unfused model's outputs (onnxruntime with optimizations off, ortgpu with them off) within one
quantization step of the output; its saved form runs in onnxruntime; near misses stay; the
provider decides (no kernel, no fusion); whole models quantized by ortgpu's and onnxruntime's
tools match ortgpu unfused and onnxruntime at ORT_ENABLE_ALL within one output step."""
import os
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper

import ortgpu
from support.fusion_cases import F32, assert_close, check_fusion, check_unfused, make_model, ops, randn, session
from ortgpu.providers.cpu import CPUExecutionProvider

pytest.importorskip("onnxruntime")

U8, I8, I32 = TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32
OUT_SCALE = 0.05   # the final DQ's scale: one quantization step of every test model's output


def _q(x, y, scale, zp, qtype=U8):
    """Q of `x` into `y` and DQ back into `y + '_f'`, with constant parameters; (nodes, inits)."""
    zdt = np.uint8 if qtype == U8 else np.int8
    inits = {f"{y}_s": np.array(scale, np.float32), f"{y}_z": np.array(zp, zdt)}
    nodes = [helper.make_node("QuantizeLinear", [x, f"{y}_s", f"{y}_z"], [y]),
             helper.make_node("DequantizeLinear", [y, f"{y}_s", f"{y}_z"], [y + "_f"])]
    return nodes, inits


def _weight(name, w, axis=None, qtype=I8):
    """A constant int8 weight (symmetric, per tensor or per `axis`) and its DQ to `name`."""
    red = tuple(i for i in range(w.ndim) if i != axis) if axis is not None else None
    scale = (np.abs(w).max(axis=red) / 127).astype(np.float32)
    shape = [-1 if i == axis else 1 for i in range(w.ndim)] if axis is not None else []
    q = np.clip(np.rint(w / scale.reshape(shape)), -127, 127).astype(np.int8 if qtype == I8 else np.uint8)
    zdt = np.int8 if qtype == I8 else np.uint8
    inits = {f"{name}_q": q, f"{name}_s": scale, f"{name}_z": np.zeros(scale.shape, zdt)}
    attrs = {"axis": axis} if axis is not None else {}
    return [helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [name], **attrs)], inits, scale


def _bias(name, b, x_scale, w_scale, scale_factor=1.0):
    scale = (np.float32(x_scale) * w_scale * np.float32(scale_factor)).astype(np.float32)
    q = np.rint(b / scale).astype(np.int32)
    inits = {f"{name}_q": q, f"{name}_s": scale, f"{name}_z": np.zeros(scale.shape, np.int32)}
    attrs = {"axis": 0} if scale.ndim else {}
    return [helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [name], **attrs)], inits


def _model(body, x_shape, y_shape, in_scale=0.03, in_zp=128, qtype=U8, out_zp=None, out_scale=OUT_SCALE,
           extra_inputs=(), opset=17):
    """x -> Q/DQ -> body(x_f) -> y_pre -> Q/DQ -> y; body returns (nodes, inits)."""
    zp = in_zp if qtype == U8 else in_zp - 128
    nodes, inits = _q("x", "xq", in_scale, zp, qtype)
    bn, bi = body("xq_f")
    on, oi = _q("y_pre", "yq", out_scale, (128 if qtype == U8 else 0) if out_zp is None else out_zp, qtype)
    nodes += bn + on + [helper.make_node("Identity", ["yq_f"], ["y"])]
    inputs = [("x", F32, list(x_shape))] + list(extra_inputs)
    return make_model(nodes, inputs, [("y", F32, list(y_shape))], {**inits, **bi, **oi}, opset=opset)


def _conv_body(per_channel=True, bias=True, bias_factor=1.0, group=1):
    def body(x):
        w = randn(6, 4 // group, 3, 3, seed=1, scale=0.3)
        wn, wi, ws = _weight("w", w, 0 if per_channel else None)
        ins = [x, "w"]
        if bias:
            bn, bi = _bias("b", randn(6, seed=2, scale=0.2), 0.03, ws, bias_factor)
            wn, wi = wn + bn, {**wi, **bi}
            ins.append("b")
        return wn + [helper.make_node("Conv", ins, ["y_pre"], pads=[1, 1, 1, 1], group=group)], wi
    return body


def _feed(shape, seed=0, scale=1.5):
    return {"x": randn(*shape, seed=seed, scale=scale)}


STEP = dict(rtol=0, atol=OUT_SCALE * 1.001)


@pytest.mark.parametrize("per_channel,bias,qtype", [(True, True, U8), (False, True, U8), (True, False, U8),
                                                   (True, True, I8)])
def test_conv_group_becomes_qlinear_conv(per_channel, bias, qtype):
    model = _model(_conv_body(per_channel, bias), (2, 4, 7, 6), (2, 6, 7, 6), qtype=qtype)
    sess = check_fusion(model, _feed((2, 4, 7, 6)), "QLinearConv", domain="", **STEP)
    assert "Conv" not in ops(sess)


def test_grouped_conv():
    model = _model(_conv_body(group=2), (1, 4, 5, 5), (1, 6, 5, 5))
    check_fusion(model, _feed((1, 4, 5, 5)), "QLinearConv", domain="", **STEP)


def _matmul_body(per_column=True, with_q=True):
    def body(x):
        wn, wi, _ = _weight("w", randn(8, 5, seed=3, scale=0.4), 1 if per_column else None)
        if with_q:
            return wn + [helper.make_node("MatMul", [x, "w"], ["y_pre"])], wi
        return wn + [helper.make_node("MatMul", [x, "w"], ["mm"]), helper.make_node("Relu", ["mm"], ["y_pre"])], wi
    return body


@pytest.mark.parametrize("per_column", [True, False])
def test_matmul_group_becomes_qlinear_matmul(per_column):
    model = _model(_matmul_body(per_column), (3, 4, 8), (3, 4, 5))
    check_fusion(model, _feed((3, 4, 8)), "QLinearMatMul", domain="", **STEP)


def test_matmul_with_a_float_result_becomes_matmul_integer_to_float():
    model = _model(_matmul_body(with_q=False), (4, 8), (4, 5))
    check_fusion(model, _feed((4, 8)), "MatMulIntegerToFloat", domain="com.microsoft", **STEP)


def _gemm_body(trans_b, bias=True, with_q=True, beta=1.0):
    def body(x):
        w = randn(5, 8, seed=4, scale=0.4) if trans_b else randn(8, 5, seed=4, scale=0.4)
        wn, wi, ws = _weight("w", w, 0 if trans_b else 1)
        ins = [x, "w"]
        if bias:
            bn, bi = _bias("b", randn(5, seed=5, scale=0.3), 0.03, ws, 0.7 / beta)   # QGemm: C in alpha/beta scale
            wn, wi = wn + bn, {**wi, **bi}
            ins.append("b")
        out = "y_pre" if with_q else "g"
        nodes = wn + [helper.make_node("Gemm", ins, [out], transB=trans_b, alpha=0.7, beta=beta)]
        if not with_q:
            nodes.append(helper.make_node("Relu", ["g"], ["y_pre"]))
        return nodes, wi
    return body


@pytest.mark.parametrize("trans_b,bias,with_q", [(1, True, True), (0, True, True), (1, False, True), (1, True, False)])
def test_gemm_group_becomes_qgemm(trans_b, bias, with_q):
    model = _model(_gemm_body(trans_b, bias, with_q), (4, 8), (4, 5))
    check_fusion(model, _feed((4, 8)), "QGemm", domain="com.microsoft", **STEP)


@pytest.mark.parametrize("op", ["Add", "Mul"])
def test_add_and_mul_become_qlinear_ops(op):
    def body(x):
        nodes, inits = _q("x2", "x2q", 0.02, 100)
        return nodes + [helper.make_node(op, [x, "x2q_f"], ["y_pre"])], inits
    model = _model(body, (2, 3, 4), (2, 3, 4), extra_inputs=[("x2", F32, [2, 3, 4])])
    feed = {**_feed((2, 3, 4)), "x2": randn(2, 3, 4, seed=7)}
    check_fusion(model, feed, f"QLinear{op}", domain="com.microsoft", **STEP)


@pytest.mark.parametrize("op,attrs", [("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 1], "pads": [1, 0, 1, 0]}),
                                      ("GlobalAveragePool", {}), ("Sigmoid", {}), ("LeakyRelu", {"alpha": 0.2})])
def test_unary_groups(op, attrs):
    shapes = {"AveragePool": (1, 3, 5, 3), "GlobalAveragePool": (1, 3, 1, 1)}
    body = lambda x: ([helper.make_node(op, [x], ["y_pre"], **attrs)], {})  # noqa: E731
    model = _model(body, (1, 3, 4, 4), shapes.get(op, (1, 3, 4, 4)), out_scale=0.01)
    feed = _feed((1, 3, 4, 4))
    sess = session(model)
    assert ops(sess).count(f"QLinear{op}") == 1, ops(sess)
    from support.fusion_cases import onnxruntime_run
    assert_close(sess.run(None, feed), onnxruntime_run(model, feed), 0, 0.01 * 1.001)
    assert_close(session(model, "ORT_DISABLE_ALL").run(None, feed), onnxruntime_run(model, feed), 0, 0.01 * 1.001)


def test_concat_group():
    def body(x):
        nodes, inits = _q("x2", "x2q", 0.02, 100)
        return nodes + [helper.make_node("Concat", [x, "x2q_f"], ["y_pre"], axis=1)], inits
    model = _model(body, (2, 3), (2, 7), extra_inputs=[("x2", F32, [2, 4])])
    check_fusion(model, {**_feed((2, 3)), "x2": randn(2, 4, seed=8)}, "QLinearConcat", domain="com.microsoft", **STEP)


@pytest.mark.parametrize("op", ["Transpose", "MaxPool", "Reshape", "Flatten"])
def test_pass_through_ops_run_on_the_quantized_tensor(op):
    def body(x):
        extra = {"Transpose": {"perm": [0, 2, 3, 1]}, "MaxPool": {"kernel_shape": [2, 2], "pads": [1, 1, 0, 0]}}
        ins, inits = [x], {}
        if op == "Reshape":
            ins, inits = [x, "shape"], {"shape": np.array([1, -1], np.int64)}
        nodes, q_inits = _q("mid", "midq", 0.03, 128)   # same parameters as x's: the group drops its Q/DQ
        return ([helper.make_node(op, ins, ["mid"], **extra.get(op, {}))] + nodes
                + [helper.make_node("Relu", ["midq_f"], ["y_pre"])]), {**inits, **q_inits}
    out = {"Transpose": (1, 4, 4, 2), "MaxPool": (1, 2, 4, 4), "Reshape": (1, 32), "Flatten": (1, 32)}[op]
    model = _model(body, (1, 2, 4, 4), out)
    sess = session(model)
    kept = ops(sess)
    assert kept.count(op) == 1 and kept.count("DequantizeLinear") == 2, kept   # the input's DQ and the last
    np.testing.assert_array_equal(sess.run(None, _feed((1, 2, 4, 4)))[0],
                                  session(model, "ORT_DISABLE_ALL").run(None, _feed((1, 2, 4, 4)))[0])
    from support.fusion_cases import onnxruntime_run
    np.testing.assert_array_equal(sess.run(None, _feed((1, 2, 4, 4)))[0], onnxruntime_run(model, _feed((1, 2, 4, 4)))[0])


@pytest.mark.parametrize("case", ["bias_of_another_scale", "conv_output_read_twice", "scale_not_constant",
                                  "pass_through_with_other_scale", "gemm_beta"])
def test_near_misses_do_not_fuse(case):
    feed = _feed((2, 4, 7, 6))
    fused = "QLinearConv"
    if case == "bias_of_another_scale":
        model = _model(_conv_body(bias_factor=2.0), (2, 4, 7, 6), (2, 6, 7, 6))
    elif case == "conv_output_read_twice":
        model = _model(_conv_body(), (2, 4, 7, 6), (2, 6, 7, 6))
        model.graph.output.append(helper.make_tensor_value_info("y_pre", F32, [2, 6, 7, 6]))
    elif case == "scale_not_constant":
        model = _model(_conv_body(), (2, 4, 7, 6), (2, 6, 7, 6), extra_inputs=[("yq_s", F32, [])])
        inits = [i for i in model.graph.initializer if i.name != "yq_s"]
        del model.graph.initializer[:]
        model.graph.initializer.extend(inits)
        feed["yq_s"] = np.array(OUT_SCALE, np.float32)
    elif case == "gemm_beta":
        model = _model(_gemm_body(1, beta=0.5), (4, 8), (4, 5))
        gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
        next(a for a in gemm.attribute if a.name == "beta").f = 0.25   # beta changed after C was scaled for 0.5
        feed, fused = _feed((4, 8)), "QGemm"
    else:
        def body(x):
            nodes, inits = _q("mid", "midq", 0.04, 128)
            return [helper.make_node("Transpose", [x], ["mid"], perm=[1, 0])] + nodes + [
                helper.make_node("Relu", ["midq_f"], ["y_pre"])], inits
        model = _model(body, (3, 5), (5, 3))
        feed, fused = _feed((3, 5)), "Transpose"
        sess = session(model)
        assert ops(sess).count("DequantizeLinear") == 3, ops(sess)   # x's, mid's, the output's
        return
    check_unfused(model, feed, fused, **STEP)


class _NoQuantizedKernels(CPUExecutionProvider):
    """A CPU provider without the quantized ops the fusion makes."""

    def kernel_for(self, op_type, domain, opset):
        return None if op_type.startswith("QLinear") or op_type == "QGemm" else super().kernel_for(op_type, domain, opset)


def test_a_provider_without_the_quantized_kernel_keeps_the_group():
    model = _model(_conv_body(), (2, 4, 7, 6), (2, 6, 7, 6))
    sess = ortgpu.InferenceSession(model.SerializeToString(), providers=[_NoQuantizedKernels()])
    assert "QLinearConv" not in ops(sess) and "Conv" in ops(sess)


def test_disabled_by_name():
    model = _model(_conv_body(), (2, 4, 7, 6), (2, 6, 7, 6))
    assert "QLinearConv" not in ops(session(model, disabled_optimizers=["QDQSelectorActionTransformer"]))


def test_basic_level_keeps_the_quantized_weights_for_the_fusion():
    """ConstantFolding leaves DequantizeLinear alone (as onnxruntime): the weight stays int8."""
    model = _model(_conv_body(), (2, 4, 7, 6), (2, 6, 7, 6))
    kept = ops(session(model, "ORT_ENABLE_BASIC"))
    assert kept.count("DequantizeLinear") == 4 and "Conv" in kept   # x's, w's, b's and the output's


# --- whole models, quantized by both tools -------------------------------------------------------

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "quantization"))


def _quantized(tool, name, tmp_path):
    import onnx
    import qmodels as Q
    model, shape = {"cnn": (Q.resnet_cnn(), (2, 3, 32, 32)), "bert": (Q.bert_layer(), (2, 16, 128)),
                    "mlp": (Q.mlp(), (8, 128))}[name]
    src, dst = tmp_path / f"{name}.onnx", tmp_path / f"{name}_{tool}.onnx"
    onnx.save(model, src)
    from ortgpu import quantization as oq
    lib = oq if tool == "ortgpu" else __import__("onnxruntime.quantization", fromlist=["x"])
    lib.quantize_static(str(src), str(dst), Q.Reader("x", shape, 2), quant_format=lib.QuantFormat.QDQ,
                        activation_type=lib.QuantType.QUInt8, weight_type=lib.QuantType.QInt8, per_channel=True)
    return onnx.load(dst), Q.Reader("x", shape, 1, seed=9).feeds[0]


def _output_step(model):
    """The scale of the DQ that writes the graph output (one quantization step of it)."""
    from onnx import numpy_helper
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out = model.graph.output[0].name
    dq = next(n for n in model.graph.node if out in n.output)
    return float(inits[dq.input[1]].max()) if dq.op_type == "DequantizeLinear" else None


@pytest.mark.parametrize("tool", ["ortgpu", "onnxruntime"])
@pytest.mark.parametrize("name,expected", [("cnn", {"QLinearConv": 5, "QLinearAdd": 2, "QGemm": 1}),
                                           ("mlp", {"QLinearMatMul": 2}),
                                           ("bert", {"QLinearMatMul": 6, "QLinearSoftmax": 1})])
def test_quantized_models_match_unfused_and_onnxruntime(tool, name, expected, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model, feed = _quantized(tool, name, tmp_path)
    fused = session(model)
    kept = ops(fused)
    for op, n in expected.items():
        assert kept.count(op) >= n, (op, kept)
    # one step of the output: its DQ's scale; onnxruntime's tool leaves the BERT layer's last
    # LayerNormalization in float, whose unit-variance output moves by about 0.03 per input step
    step = _output_step(model) or 0.05
    got = fused.run(None, feed)[0]
    unfused = session(model, "ORT_DISABLE_ALL").run(None, feed)[0]
    theirs_off, theirs_all = (_onnxruntime(ort, model, feed, level) for level in ("ORT_DISABLE_ALL", "ORT_ENABLE_ALL"))
    assert np.abs(got - unfused).max() <= step * 1.001
    assert np.abs(got - theirs_off).max() <= step * 1.001
    # onnxruntime's fused int8 kernels (its QLinearSoftmax table, QLinearAdd's fixed point) move its
    # own output by up to a few steps from its unfused result: ortgpu stays within that plus one step
    own_drift = np.abs(theirs_all - theirs_off).max()
    assert np.abs(got - theirs_all).max() <= own_drift + step * 1.001
    if name != "bert":
        assert own_drift <= step * 1.001


def _onnxruntime(ort, model, feed, level):
    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feed)[0]


def test_fused_groups_run_on_the_device_provider_that_owns_them(tmp_path):
    """With the device double first (shared kernels on a CuPy-like array module), the quantized ops
    are placed on it and give the CPU's fused results: the integer kernels never pull a device
    value to the host."""
    from support.device_double import providers as double_providers
    model, feed = _quantized("ortgpu", "cnn", tmp_path)
    sess = ortgpu.InferenceSession(model.SerializeToString(), providers=double_providers())
    placed = {op: provider for _, op, provider in sess.get_provider_assignment()}
    for op in ("QLinearConv", "QLinearAdd", "QGemm"):
        assert placed[op] == "FakeDeviceExecutionProvider", placed
    step = _output_step(model)
    assert np.abs(sess.run(None, feed)[0] - session(model).run(None, feed)[0]).max() <= step * 1.001
