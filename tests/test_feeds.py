"""run() feed checks: the same exception class and message text as onnxruntime 1.31."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest

from support import model_builders as mb
import ortgpu

onnxruntime.set_default_logger_severity(3)
CPU = ["CPUExecutionProvider"]
X = np.ones((2, 3), np.float32)
A = np.ones((2, 4), np.float32)
B = np.arange(3)


def run_both(m: onnx.ModelProto, feed, output_names=None):
    data = m.SerializeToString()
    ref = onnxruntime.InferenceSession(data, providers=CPU)
    got = ortgpu.InferenceSession(data, providers=CPU)
    return (mb.outcome(lambda: ref.run(output_names, feed)),
            mb.outcome(lambda: got.run(output_names, feed)), got)


def _same_arrays(a, b):
    assert type(a) is type(b)
    if isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same_arrays(x, y)
    elif a is not None:
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


# name -> (model, feed, output names); each one onnxruntime refuses with a typed error
BAD_FEEDS = {
    "missing_input": (mb.identity, {}, None),
    "missing_one_of_two": (mb.two_inputs_three_outputs, {"a": A}, None),
    "unknown_input": (mb.identity, {"x": X, "zz": X}, None),
    "unknown_output": (mb.identity, {"x": X}, ["nope"]),
    "unknown_output_after_good": (mb.two_inputs_three_outputs, {"a": A, "b": B}, ["yc", "nope"]),
    "double_for_float": (mb.identity, {"x": X.astype(np.float64)}, None),
    "int32_for_float": (mb.identity, {"x": X.astype(np.int32)}, None),
    "bool_for_float": (mb.identity, {"x": X.astype(bool)}, None),
    "float_for_int64": (lambda: mb.identity(shape=[3], elem=mb.INT64), {"x": np.ones(3, np.float32)}, None),
    "rank_too_low": (mb.identity, {"x": np.ones(3, np.float32)}, None),
    "rank_too_high": (mb.identity, {"x": np.ones((1, 2, 3), np.float32)}, None),
    "fixed_dim": (mb.identity, {"x": np.ones((2, 4), np.float32)}, None),
    "fixed_dim_first": (mb.two_inputs_three_outputs, {"a": np.ones((3, 4), np.float32), "b": B}, None),
    "two_fixed_dims": (lambda: mb.identity(shape=[2, 3]), {"x": np.ones((4, 5), np.float32)}, None),
    "initializer_not_feedable_ir3": (lambda: mb.with_initializer_input(3),
                                     {"x": np.ones(2, np.float32), "w": np.ones(2, np.float32)}, None),
    "overridable_wrong_dim_ir4": (lambda: mb.with_initializer_input(4),
                                  {"x": np.ones(2, np.float32), "w": np.ones(3, np.float32)}, None),
    "tensor_for_sequence": (mb.sequence_identity, {"s": np.arange(2)}, None),
}


@pytest.mark.parametrize("case", sorted(BAD_FEEDS))
def test_bad_feed_matches_onnxruntime(case):
    build, feed, outs = BAD_FEEDS[case]
    ref, got, sess = run_both(build(), feed, outs)
    assert ref[0] != "ok", "onnxruntime accepted this feed"
    assert got[0] == ref[0]
    if case == "tensor_for_sequence":  # ours also names the expected type inside the message
        assert got[1].startswith("input with name: 's' expected to be of type: 3") and "a tensor" in got[1]
    else:
        assert got[1] == ref[1]
    # the session is still usable after a refused feed
    good = {vi.name: _good_value(vi) for vi in sess._io.inputs}
    assert all(r is not None for r in sess.run(None, good))


def _good_value(vi):
    if vi.type.WhichOneof("value") == "sequence_type":
        return [np.arange(2)]
    tt = vi.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else 2 for d in tt.shape.dim]
    return np.ones(shape, dtype=onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))


def test_feed_messages_have_onnxruntime_wording():
    _, got, _ = run_both(mb.identity(), {"x": X.astype(np.float64)})
    assert got == ("InvalidArgument",
                   "Unexpected input data type. Actual: (tensor(double)) , expected: (tensor(float))")
    _, got, _ = run_both(mb.identity(), {"x": np.ones((2, 4), np.float32)})
    assert got[1] == ("Got invalid dimensions for input: x for the following indices\n"
                      " index: 1 Got: 4 Expected: 3\n Please fix either the inputs/outputs or the model.")
    _, got, _ = run_both(mb.identity(), {})
    assert got == ("ValueError", "Required inputs (['x']) are missing from input feed ([]).")


# name -> (model, feed); each one onnxruntime accepts
GOOD_FEEDS = {
    "list_of_floats": (mb.identity, {"x": [[1.0, 2.0, 3.0]]}),
    "list_of_ints_for_float": (mb.identity, {"x": [[1, 2, 3]]}),
    "list_for_int64": (lambda: mb.identity(shape=[2], elem=mb.INT64), {"x": [3, 4]}),
    "list_no_shape": (lambda: mb.identity(shape=None), {"x": [1.0, 2.0]}),
    "zero_d_array": (lambda: mb.identity(shape=[]), {"x": np.array(1.5, np.float32)}),
    "non_contiguous": (mb.identity, {"x": np.ones((3, 2), np.float32).T}),
    "string_array": (lambda: mb.identity(shape=[], elem=onnx.TensorProto.STRING), {"x": np.array("ab")}),
    "string_object_array": (lambda: mb.identity(shape=[1], elem=onnx.TensorProto.STRING),
                            {"x": np.array(["ab"], dtype=object)}),
    "string_list": (lambda: mb.identity(shape=[1], elem=onnx.TensorProto.STRING), {"x": ["ab"]}),
    "symbolic_dim_any_size": (mb.identity, {"x": np.ones((7, 3), np.float32)}),
    "sequence": (mb.sequence_identity, {"s": [np.arange(2), np.arange(3)]}),
    "empty_sequence": (mb.sequence_identity, {"s": []}),
    "optional_none": (mb.optional_identity, {"o": None}),
    "optional_value": (mb.optional_identity, {"o": np.ones(3, np.float32)}),
    "overridable_initializer_fed": (lambda: mb.with_initializer_input(4),
                                    {"x": np.ones(2, np.float32), "w": np.zeros(2, np.float32)}),
    "overridable_initializer_left_out": (lambda: mb.with_initializer_input(4), {"x": np.ones(2, np.float32)}),
    "ir3_initializer_constant": (lambda: mb.with_initializer_input(3), {"x": np.ones(2, np.float32)}),
}


@pytest.mark.parametrize("case", sorted(GOOD_FEEDS))
def test_good_feed_matches_onnxruntime(case):
    build, feed = GOOD_FEEDS[case]
    ref, got, _ = run_both(build(), feed)
    assert ref[0] == "ok", ref
    assert got[0] == "ok", got
    assert len(got[1]) == len(ref[1])
    for a, b in zip(got[1], ref[1]):
        _same_arrays(a, b)


@pytest.mark.parametrize("value", [np.float32(1.5), 1.5, np.array(1.5, np.float32)])
def test_scalars_accepted(value):
    # onnxruntime refuses NumPy and Python scalars ("Unable to handle object of type"); ortgpu
    # takes them as 0-d arrays of the input's type, which the ONNX backend suite needs.
    s = ortgpu.InferenceSession(mb.identity(shape=[]).SerializeToString())
    y = s.run(None, {"x": value})[0]
    assert y.dtype == np.float32 and y.shape == () and y == 1.5


def test_scalar_of_wrong_type_refused():
    s = ortgpu.InferenceSession(mb.identity(shape=[]).SerializeToString())
    with pytest.raises(ortgpu.InvalidArgument, match=r"Actual: \(tensor\(double\)\)"):
        s.run(None, {"x": np.float64(1.5)})


@pytest.mark.parametrize("feed,cls", [
    ([X], TypeError),                          # not a dict
    ({"x": None}, ortgpu.InvalidArgument),     # None for a tensor input
    ({"x": object()}, ortgpu.InvalidArgument),
    ({"x": "text"}, ortgpu.InvalidArgument),   # a str for a float input
])
def test_unusable_values_are_typed_errors(feed, cls):
    s = ortgpu.InferenceSession(mb.identity().SerializeToString())
    with pytest.raises(cls):
        s.run(None, feed)
    np.testing.assert_array_equal(s.run(None, {"x": X})[0], X)


def test_sequence_with_wrong_element_type_is_typed():
    s = ortgpu.InferenceSession(mb.sequence_identity().SerializeToString())
    with pytest.raises(ortgpu.InvalidArgument, match="tensor\\(int64\\)"):
        s.run(None, {"s": [np.ones(2, np.float32)]})


def test_output_names_as_str_is_refused():
    s = ortgpu.InferenceSession(mb.identity().SerializeToString())
    with pytest.raises(TypeError):
        s.run("y", {"x": X})
