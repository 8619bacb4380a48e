"""auto_mixed_precision: bisection keeps exactly the nodes whose float16 version breaks the
tolerance, reports why, and returns a model onnxruntime runs within it."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ortgpu
from ortgpu.precision import auto_mixed_precision

ort = pytest.importorskip("onnxruntime")
F = TensorProto.FLOAT


def _chain_model():
    """x -> relu -> add -> up (x 1e4, overflows float16) -> down (x 1e-4) -> neg -> add -> mul -> add."""
    consts = {"c1": 0.5, "big": 1e4, "small": 1e-4, "c2": 0.25, "c3": -0.125}
    inits = [numpy_helper.from_array(np.array([v], np.float32), k) for k, v in consts.items()]
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"),
             helper.make_node("Add", ["a", "c1"], ["b"], name="add1"),
             helper.make_node("Mul", ["b", "big"], ["c"], name="up"),
             helper.make_node("Mul", ["c", "small"], ["d"], name="down"),
             helper.make_node("Neg", ["d"], ["e"], name="neg"),
             helper.make_node("Add", ["e", "c2"], ["f"], name="add2"),
             helper.make_node("Mul", ["f", "c1"], ["g"], name="mul"),
             helper.make_node("Add", ["g", "c3"], ["y"], name="add3")]
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", F, [64])],
                          [helper.make_tensor_value_info("y", F, [64])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _feeds():
    return {"x": np.linspace(-3, 12, 64).astype(np.float32)}


def _ort(model, feed):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feed)


def test_keeps_the_overflowing_nodes_and_converts_the_rest():
    m = _chain_model()
    result = auto_mixed_precision(m, _feeds(), rtol=1e-2, atol=1e-3, providers=["CPUExecutionProvider"])
    assert sorted(result.fp32_nodes) == ["down", "up"]
    assert "non-finite" in result.fp32_nodes["up"]
    assert result.fp16_nodes == ["relu", "add1", "neg", "add2", "mul", "add3"]
    onnx.checker.check_model(result.model, full_check=True)
    (ref,) = _ort(m, _feeds())
    (got,) = _ort(result.model, _feeds())
    assert got.dtype == np.float32  # keep_io_types
    assert np.all(np.abs(got - ref) <= 1e-3 + 1e-2 * np.abs(ref))
    # max_error is measured where the trials ran (ortgpu's CPU provider, true float16 arithmetic;
    # onnxruntime's CPU computes most float16 ops in float32)
    (mine,) = ortgpu.InferenceSession(result.model, providers=["CPUExecutionProvider"]).run(None, _feeds())
    assert result.max_error == pytest.approx(float(np.abs(mine.astype(np.float64) - ref).max()), rel=1e-6)
    assert 0 < result.max_error <= 1e-3 + 1e-2 * np.abs(ref).max()
    # the all-float16 trial fails, so the search split it: more than one trial
    assert result.trials > 2


def test_whole_model_in_float16_when_it_fits_and_io_types_can_change():
    m = _chain_model()
    feeds = {"x": np.linspace(-3, 3, 64).astype(np.float32) * 1e-3}  # up's product stays in range
    result = auto_mixed_precision(m, feeds, rtol=1e-2, atol=1e-2, keep_io_types=False,
                                  providers=["CPUExecutionProvider"])
    assert result.fp32_nodes == {} and len(result.fp16_nodes) == 8
    assert result.trials == 2  # the whole model at once, then the final check
    assert result.model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16


def test_tight_tolerance_reports_the_measured_error():
    m = _chain_model()
    feeds = {"x": np.linspace(-3, 3, 64).astype(np.float32) * 1e-3}
    result = auto_mixed_precision(m, feeds, rtol=0.0, atol=1e-9, providers=["CPUExecutionProvider"])
    assert result.fp32_nodes  # float16 rounding alone exceeds 1e-9
    assert all("max |error|" in why or "non-finite" in why for why in result.fp32_nodes.values())
    (ref,) = _ort(m, feeds)
    (got,) = _ort(result.model, feeds)
    assert np.abs(got - ref).max() <= 1e-9


def test_bad_arguments():
    with pytest.raises(TypeError, match="ModelProto"):
        auto_mixed_precision("model.onnx", {}, 1e-2, 1e-3)
    with pytest.raises(ValueError, match="rtol and atol"):
        auto_mixed_precision(_chain_model(), _feeds(), -1.0, 1e-3)
