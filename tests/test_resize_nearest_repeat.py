"""Resize nearest by whole factors along the last two axes takes a compiled copy
(resize_compiled.nearest_repeat) when every output index picks index // factor; other
coordinate modes and factors take the general path.  Against onnxruntime over factors, modes,
scales and sizes, ranks and dtypes, with ORTGPU_JIT=0 too."""
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortgpu
from ortgpu.providers.cpu import resize_compiled

CASES = [  # x shape, scales (or None: sizes), sizes, coordinate mode, nearest mode
    ((1, 3, 5, 7), [1, 1, 2, 2], None, "asymmetric", "round_prefer_floor"),
    ((2, 4, 3, 6), [1, 1, 3, 2], None, "asymmetric", "floor"),
    ((1, 2, 4, 5), [1, 1, 2, 2], None, "half_pixel", "round_prefer_floor"),
    ((1, 2, 4, 5), [1, 1, 3, 3], None, "half_pixel", "round_prefer_floor"),   # index // 3 as well
    ((1, 2, 4, 5), [1, 1, 1, 2], None, "asymmetric", "floor"),
    ((1, 2, 4, 5), None, [1, 2, 8, 10], "asymmetric", "round_prefer_ceil"),
    ((1, 2, 4, 5), [1, 1, 2, 2], None, "align_corners", "round_prefer_floor"),   # index // 2 here too
    ((1, 2, 4, 5), [1, 1, 2, 2], None, "asymmetric", "ceil"),   # not index // 2
    ((2, 3, 4), [1, 2, 2], None, "asymmetric", "floor"),
    ((1, 1, 2, 3, 4), [1, 1, 1, 2, 2], None, "asymmetric", "floor"),
]
DTYPES = [TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT32, TensorProto.FLOAT16]


def _model(xs, scales, sizes, ctm, nearest, elem):
    inits = [numpy_helper.from_array(np.array([], np.float32), "roi")]
    inputs = ["x", "roi"]
    if scales is not None:
        inits.append(numpy_helper.from_array(np.array(scales, np.float32), "scales"))
        inputs.append("scales")
    else:
        inits.append(numpy_helper.from_array(np.array(sizes, np.int64), "sizes"))
        inputs += ["", "sizes"]
    node = helper.make_node("Resize", inputs, ["y"], mode="nearest", coordinate_transformation_mode=ctm,
                            nearest_mode=nearest)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, xs)],
                          [helper.make_tensor_value_info("y", elem, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)], ir_version=9).SerializeToString()


@pytest.mark.parametrize("jit", ["1", "0"])
@pytest.mark.parametrize("elem", DTYPES, ids=lambda e: TensorProto.DataType.Name(e))
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[3]}-{c[1] or c[2]}-{len(c[0])}d")
def test_nearest_resize_matches_onnxruntime(case, elem, jit, monkeypatch):
    monkeypatch.setenv("ORTGPU_JIT", jit)
    xs, scales, sizes, ctm, nearest = case
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    x = (np.random.default_rng(3).standard_normal(xs) * 50).astype(dtype)
    model = _model(xs, scales, sizes, ctm, nearest, elem)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_the_compiled_copy_serves_whole_factors(monkeypatch):
    calls = []
    real = resize_compiled.nearest_repeat
    monkeypatch.setattr(resize_compiled, "nearest_repeat", lambda *a: calls.append(a[1:]) or real(*a))
    for case in (CASES[0], CASES[1], CASES[3], CASES[7]):
        xs, scales, sizes, ctm, nearest = case
        model = _model(xs, scales, sizes, ctm, nearest, TensorProto.FLOAT)
        ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(
            None, {"x": np.ones(xs, np.float32)})
    if resize_compiled.takes(np.ones(1, np.float32)) and ortgpu.providers.cpu.jit.enabled():
        assert calls == [(2, 2), (3, 2), (3, 3)]   # ceil is not index // 2: the general path
