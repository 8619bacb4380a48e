"""A Conv node works out its geometry, path and weight layout once per input shape
(conv.py::ConvForm, kept by KernelContext.prepared with the input's shape as its key): results
stay those of onnxruntime when the input's shape changes from run to run (and back), when the
weight is an initializer a feed may replace, and for every path (1x1, grouped, depthwise, small,
kn2row, im2col); the form is kept once per node, not once per shape seen."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortgpu
from ortgpu.providers.constant_forms import ConstantForms
from ortgpu.providers.cpu import jit
from ortgpu.providers.registry import KernelContext

PATHS = {  # path -> (channels in, filters, group, kernel, pads, strides)
    "1x1": (8, 4, 1, 1, 0, 1),
    "grouped 1x1": (8, 4, 2, 1, 0, 1),
    "depthwise": (6, 6, 6, 3, 1, 1),
    "small": (3, 5, 1, 3, 1, 1),
    "kn2row": (16, 8, 1, 3, 1, 1),
    "im2col": (8, 16, 1, 3, 1, 2),
}


def _model(c, m, group, k, pad, stride, *, overridable=False, bias=True):
    rng = np.random.default_rng(c * 100 + m + k)
    w = rng.standard_normal((m, c // group, k, k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["y"], group=group,
                            kernel_shape=[k, k], pads=[pad] * 4, strides=[stride] * 2)
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, c, None, None])]
    if overridable:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, list(w.shape)))
    inits = [numpy_helper.from_array(w, "w")] + ([numpy_helper.from_array(b, "b")] if bias else [])
    g = helper.make_graph([node], "conv", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10).SerializeToString(), w


def _x(c, h, w, seed=0):
    return np.random.default_rng(seed).standard_normal((1, c, h, w)).astype(np.float32)


@pytest.mark.parametrize("path", sorted(PATHS))
def test_shapes_changing_between_runs_match_onnxruntime(path):
    c = PATHS[path][0]
    model, _ = _model(*PATHS[path])
    mine = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"])
    ref = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    sizes = [(40, 50), (60, 80), (40, 50), (64, 96), (60, 80)] if path != "small" else [(9, 11), (5, 7), (9, 11)]
    for i, (h, w) in enumerate(sizes):
        x = _x(c, h, w, seed=i)
        np.testing.assert_allclose(mine.run(None, {"x": x})[0], ref.run(None, {"x": x})[0], rtol=1e-4, atol=1e-4)
    step = next(st for st in mine._core.plan.steps if st.node.op_type == "Conv")
    assert set(step.ctx._forms) == {"conv"}, "one form per node, whatever the shapes seen"
    if path != "depthwise" or jit.enabled():  # without numba, depthwise convolutions are im2col's
        assert step.ctx._forms["conv"][1].path == path


def test_the_form_of_a_shape_is_reused_and_made_again_for_another():
    model, _ = _model(*PATHS["kn2row"])
    mine = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"])
    step = next(st for st in mine._core.plan.steps if st.node.op_type == "Conv")
    mine.run(None, {"x": _x(16, 9, 9)})
    first = step.ctx._forms["conv"][1]
    mine.run(None, {"x": _x(16, 9, 9, seed=1)})
    assert step.ctx._forms["conv"][1] is first
    mine.run(None, {"x": _x(16, 12, 9)})
    assert step.ctx._forms["conv"][1] is not first
    assert step.ctx._forms["conv"][1].out_shape == [12, 9]


def test_a_fed_weight_replaces_the_initializer_every_run():
    model, w = _model(*PATHS["kn2row"], overridable=True)
    mine = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"])
    ref = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    x = _x(16, 9, 9)
    for feed in ({"x": x}, {"x": x, "w": -w}, {"x": x, "w": 2 * w}, {"x": x}):
        np.testing.assert_allclose(mine.run(None, feed)[0], ref.run(None, feed)[0], rtol=1e-4, atol=1e-4)


def test_keyed_forms_are_made_again_when_the_key_changes():
    ctx = KernelContext(np, "CPUExecutionProvider", constant_inputs=(False, True), constant_forms=ConstantForms())
    w = np.ones(3)
    made = []

    def make(tag):
        made.append(tag)
        return tag
    assert ctx.prepared("f", (1,), (w,), lambda: make("a"), key=(2, 3)) == "a"
    assert ctx.prepared("f", (1,), (w,), lambda: make("b"), key=(2, 3)) == "a"
    assert ctx.prepared("f", (1,), (w,), lambda: make("c"), key=(4, 3)) == "c"
    assert ctx.prepared("f", (1,), (w,), lambda: make("d"), key=(4, 3)) == "c"
    assert made == ["a", "c"]
    assert list(ctx._forms) == ["f"]


def test_initializers_listed_among_the_inputs_of_an_ir3_model_are_constants():
    """Before IR 4 every initializer is also a graph input, and no feed may replace it (as in
    onnxruntime): the plan treats them as constants, so the Conv keeps its form across runs."""
    import onnx
    model, _ = _model(*PATHS["kn2row"])
    proto = onnx.load_from_string(model)
    proto.ir_version = 3
    proto.opset_import[0].version = 8
    for t in proto.graph.initializer:
        proto.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    data = proto.SerializeToString()
    mine = ortgpu.InferenceSession(data, providers=["CPUExecutionProvider"])
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [i.name for i in mine.get_inputs()] == [i.name for i in ref.get_inputs()] == ["x"]
    step = next(st for st in mine._core.plan.steps if st.node.op_type == "Conv")
    assert step.ctx.constant_inputs[1:] == (True, True)
    x = _x(16, 9, 9)
    for _ in range(2):
        np.testing.assert_allclose(mine.run(None, {"x": x})[0], ref.run(None, {"x": x})[0], rtol=1e-4, atol=1e-4)
    first = step.ctx._forms["conv"][1]
    mine.run(None, {"x": x})
    assert step.ctx._forms["conv"][1] is first
    with pytest.raises(Exception, match="Invalid input name"):
        mine.run(None, {"x": x, "b": np.zeros(8, np.float32)})
    with pytest.raises(Exception, match="Invalid input name"):
        ref.run(None, {"x": x, "b": np.zeros(8, np.float32)})


@pytest.mark.parametrize("seed", range(4))
def test_compiled_im2col_matches_the_window_view_of_the_padded_input(seed):
    """conv_compiled.im2col_2d (the im2col path's copy for 2-D host inputs) against the column
    matrix built from a window view of the padded input: strides, dilations, and pads of either
    sign (negative ones crop) on every side."""
    import math  # noqa: PLC0415
    from ortgpu.providers.cpu.conv_compiled import im2col_2d  # noqa: PLC0415
    from ortgpu.providers.kernels.conv import conv_out_shape, pad_spatial, window_view  # noqa: PLC0415
    rng = np.random.default_rng(seed)
    checked = 0
    while checked < 60:
        n, c, h, w = (int(v) for v in rng.integers(1, [3, 4, 12, 12]))
        k, s, d = ([int(v) for v in rng.integers(1, top, 2)] for top in (5, 4, 3))
        b, e = ([int(v) for v in rng.integers(-2, 4, 2)] for _ in range(2))
        out = conv_out_shape((h, w), k, s, d, b, e)
        if min(out) <= 0 or h + b[0] + e[0] <= 0 or w + b[1] + e[1] <= 0:
            continue
        x = rng.standard_normal((n, c, h, w)).astype(np.float32 if seed % 2 else np.float64)
        view = window_view(np, pad_spatial(np, x, b, e), k, s, d, out)
        expected = view.transpose(0, 1, 4, 5, 2, 3).reshape(n, -1, math.prod(out))
        np.testing.assert_array_equal(im2col_2d(x, k, s, d, b, out), expected)
        checked += 1
