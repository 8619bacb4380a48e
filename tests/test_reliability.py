"""Regression tests of issue 18 (reliability), each built from the campaign's reproduction and,
where onnxruntime runs the same model, compared with onnxruntime 1.32."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import ortgpu
from ortgpu import errors

ort.set_default_logger_severity(4)
CPU = ["CPUExecutionProvider"]


def _model(nodes, inputs, outputs, opset=13, initializers=(), **kw) -> bytes:
    g = h.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)], **kw)
    return m.SerializeToString()


def _both(model: bytes, feeds: dict):
    """(onnxruntime's outputs or its exception, ortgpu's outputs or its exception)."""
    out = []
    for mod in (ort, ortgpu):
        try:
            out.append(mod.InferenceSession(model, providers=CPU).run(None, feeds))
        except Exception as e:  # noqa: BLE001 - the exception is the result being compared
            out.append(e)
    return out


def _same_error_class(a: Exception, b: Exception) -> bool:
    return type(a).__name__ == type(b).__name__


# --- item 7: keepdims (and noop_with_empty_axes) count only when exactly 1 -------------------
@pytest.mark.parametrize("value", [1, 0, 2, -1])
@pytest.mark.parametrize("op", ["ReduceMean", "ReduceMax", "ArgMax", "ArgMin"])
def test_keepdims_is_true_only_for_one(op, value):
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    attrs = {"keepdims": value, **({"axes": [1]} if op.startswith("Reduce") else {"axis": 1})}
    out_type = T.INT64 if op.startswith("Arg") else T.FLOAT
    m = _model([h.make_node(op, ["x"], ["y"], **attrs)], [h.make_tensor_value_info("x", T.FLOAT, [2, 3, 4])],
               [h.make_tensor_value_info("y", out_type, None)])
    want, got = _both(m, {"x": x})
    assert want[0].shape == ((2, 1, 4) if value == 1 else (2, 4))
    np.testing.assert_array_equal(got[0], want[0])


@pytest.mark.parametrize("value", [1, 0, 2])
def test_noop_with_empty_axes_is_true_only_for_one(value):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    m = _model([h.make_node("ReduceSum", ["x", "a"], ["y"], noop_with_empty_axes=value)],
               [h.make_tensor_value_info("x", T.FLOAT, [2, 3]), h.make_tensor_value_info("a", T.INT64, [0])],
               [h.make_tensor_value_info("y", T.FLOAT, None)])
    want, got = _both(m, {"x": x, "a": np.zeros(0, np.int64)})
    np.testing.assert_array_equal(got[0], want[0])


# --- item 8: strings -> numbers as std::stod / stoll / stoull read them -----------------------
_STRINGS = ["abc", "ff", "1e999", "-1e999", "0x1A", "1.5abc", " 1.5", "1.5 ", "inf", "-INF", "nan",
            "infinity", "", "1e-999", "+3", "3.", ".5", "1,5", "0x1p3", "1e39", "1e-40", "1e-310",
            "0x", "0x.8", "nan(abc)", "\t\n 5", "1e", "1e+", "-", "3000000000", "-3000000000",
            "9223372036854775808", "-9223372036854775808", "18446744073709551615",
            "18446744073709551616", "-1", "300", "12abc", "+-1", "0.5", "2"]
_TARGETS = [T.FLOAT, T.DOUBLE, T.FLOAT16, T.INT8, T.INT32, T.INT64, T.UINT8, T.UINT64, T.BOOL]


@pytest.mark.parametrize("to", _TARGETS, ids=[T.DataType.Name(t) for t in _TARGETS])
def test_cast_from_string_matches_onnxruntime(to):
    m = _model([h.make_node("Cast", ["x"], ["y"], to=to)], [h.make_tensor_value_info("x", T.STRING, [1])],
               [h.make_tensor_value_info("y", to, [1])])
    for s in _STRINGS:
        want, got = _both(m, {"x": np.array([s], dtype=object)})
        if isinstance(want, Exception):
            assert isinstance(got, errors.RuntimeException), (s, got)
        else:
            assert not isinstance(got, Exception), (s, got)
            np.testing.assert_array_equal(got[0], want[0], err_msg=repr(s))
            assert got[0].dtype == want[0].dtype


def test_cast_refuses_hex_digits_without_prefix_and_overflow():
    # the campaign's reproduction: "abc" was 2748, "ff" 255, "1e999" inf
    m = _model([h.make_node("Cast", ["x"], ["y"], to=T.FLOAT)], [h.make_tensor_value_info("x", T.STRING, [1])],
               [h.make_tensor_value_info("y", T.FLOAT, [1])])
    sess = ortgpu.InferenceSession(m, providers=CPU)
    for s in ("abc", "ff", "1e999"):
        with pytest.raises(errors.RuntimeException, match="Cast"):
            sess.run(None, {"x": np.array([s], dtype=object)})
