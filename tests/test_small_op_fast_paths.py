"""The fast paths of small shape and layout ops (issue 17: sub-millisecond models spend their
time in Python per node) against onnxruntime: Unsqueeze/Squeeze of one axis, Slice of one axis,
Gather of one index, Pad of one axis in reflect/edge/wrap mode, ReduceMean of one float axis;
and the cases each fast path leaves to the general one (negative, out-of-range, empty, several
axes, negative steps, wraps longer than the axis), which must give the same answers or fail as
onnxruntime fails."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import ortgpu
from ortgpu.errors import _OrtError

INT64_MAX = np.iinfo(np.int64).max


def _model(op, data, consts, attrs=None, opset=18):
    """A one-node model: input 'data' and the inputs c0, c1, ... (None: left out), all fed at
    run time, so that no load-time inference judges them first: the kernels do."""
    names, inputs = ["data"], [_info("data", data)]
    for k, v in enumerate(consts):
        names.append("" if v is None else f"c{k}")
        if v is not None:
            inputs.append(_info(f"c{k}", np.asarray(v)))
    while names[-1] == "":  # trailing inputs left out are not named at all
        names.pop()
    node = helper.make_node(op, names, ["y"], **(attrs or {}))
    g = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", inputs[0].type.tensor_type.elem_type,
                                                                               None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def _info(name, value):
    elem = TensorProto.STRING if value.dtype == object else helper.np_dtype_to_tensor_dtype(value.dtype)
    return helper.make_tensor_value_info(name, elem, list(value.shape))


def _check(op, data, consts, attrs=None, opset=18, rtol=0.0):
    """ortgpu's output equals onnxruntime's (dtype, shape, values; within `rtol` for sums,
    which onnxruntime adds in another order), or both refuse the run."""
    model = _model(op, data, consts, attrs, opset)
    feeds = {"data": data, **{f"c{k}": np.asarray(v) for k, v in enumerate(consts) if v is not None}}
    try:
        ref = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    except Exception:  # noqa: BLE001 - onnxruntime refuses: ortgpu must refuse too
        with pytest.raises((_OrtError, ValueError)):
            ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)
        return None
    sess = ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"])
    for _ in range(2):  # a second run reuses what the first built
        got = sess.run(None, feeds)[0]
        assert got.dtype == ref.dtype and got.shape == ref.shape, (got.dtype, got.shape, ref.dtype, ref.shape)
        if rtol:
            np.testing.assert_allclose(got, ref, rtol=rtol, atol=0)
        else:
            np.testing.assert_array_equal(got, ref)
        assert not np.shares_memory(got, data)  # a view of the feed is copied before it is returned
    return got


_X = np.arange(24, dtype=np.float32).reshape(2, 3, 4)


@pytest.mark.parametrize("axis", [0, 1, 3, -1, -4, 4, -5])
@pytest.mark.parametrize("data", [_X, np.array(5.0, np.float32), np.zeros((0, 2), np.float32)],
                         ids=["3d", "scalar", "empty"])
def test_unsqueeze_of_one_axis(axis, data):
    _check("Unsqueeze", data, [np.int64([axis])])


@pytest.mark.parametrize("axes", [[0, 3], [-1, 0], [1, 1]])
def test_unsqueeze_of_several_axes_takes_the_general_path(axes):
    _check("Unsqueeze", _X, [np.int64(axes)])


@pytest.mark.parametrize("axis", [0, 2, -1, -3, 1, 3, -4])
def test_squeeze_of_one_axis(axis):
    _check("Squeeze", np.ones((1, 3, 1), np.float32), [np.int64([axis])])


@pytest.mark.parametrize("axes", [None, [0, 2], [-3, -1]])
def test_squeeze_of_all_or_several_axes(axes):
    _check("Squeeze", np.ones((1, 3, 1), np.float32), [None if axes is None else np.int64(axes)])


@pytest.mark.parametrize("start,end,axis,step", [
    (1, 3, 2, 1), (0, 1, 0, None), (-3, -1, -1, 1), (-100, 100, 1, 2), (2, INT64_MAX, 2, None),
    (3, 1, 2, 1), (5, 9, 1, 1), (1, 2, None, None), (3, 0, 2, -1), (-1, -INT64_MAX, 2, -2), (2, -INT64_MAX, 2, -1),
    (0, 2, 3, 1), (0, 2, -4, 1), (0, 2, 1, 0)])
def test_slice_of_one_axis(start, end, axis, step):
    consts = [np.int64([start]), np.int64([end]), None if axis is None else np.int64([axis]),
              None if step is None else np.int64([step])]
    if axis is None and step is not None:
        consts[2] = None
    while consts[-1] is None:
        consts.pop()
    _check("Slice", _X, consts)


def test_slice_of_several_axes_and_of_int32_bounds():
    _check("Slice", _X, [np.int64([0, 1]), np.int64([1, 3]), np.int64([0, 2])])
    _check("Slice", _X, [np.int32([1]), np.int32([-1]), np.int32([2]), np.int32([1])])
    _check("Slice", np.zeros((0, 4), np.float32), [np.int64([1]), np.int64([3]), np.int64([1])])


@pytest.mark.parametrize("index", [0, 2, -1, -3, 3, -4])
@pytest.mark.parametrize("shape_of_index", [(), (1,)])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_of_one_index(index, shape_of_index, axis):
    data = np.arange(27, dtype=np.int64).reshape(3, 3, 3)
    _check("Gather", data, [np.array(index, np.int64).reshape(shape_of_index)], {"axis": axis}, opset=13)


@pytest.mark.parametrize("index", [np.int64(1), np.int64([-1]), np.int32([2]), np.int64([[0]])])
def test_gather_of_one_index_from_a_1d_tensor_of_numbers_and_strings(index):
    _check("Gather", np.int64([7, 8, 9]), [index], opset=13)
    _check("Gather", np.array(["a", "bb", "ccc"], dtype=object), [index], opset=13)


@pytest.mark.parametrize("mode", ["reflect", "edge", "wrap"])
@pytest.mark.parametrize("before,after", [(2, 3), (0, 3), (3, 0), (3, 3), (1, 1), (4, 9)])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_pad_of_one_axis(mode, before, after, axis):
    data = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    pads = np.zeros(6, np.int64)
    pads[axis], pads[3 + axis] = before, after
    _check("Pad", data, [pads], {"mode": mode})


@pytest.mark.parametrize("mode", ["reflect", "edge", "wrap", "constant"])
def test_pad_of_several_axes_negative_pads_and_axes_input(mode):
    data = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    _check("Pad", data, [np.int64([1, 0, 2, 2, 1, 0])], {"mode": mode})
    _check("Pad", data, [np.int64([0, -1, 2, 0, 1, -2])], {"mode": mode})
    _check("Pad", data, [np.int64([2, 1]), None, np.int64([-1])], {"mode": mode})


def test_pad_of_a_signal_as_silero_vad_pads_it():
    signal = np.random.default_rng(0).standard_normal((1, 512)).astype(np.float32)
    _check("Pad", signal, [np.int64([0, 64, 0, 64])], {"mode": "reflect"})


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int32])
@pytest.mark.parametrize("axis", [0, 1, -1, 2, -3, 3])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_mean_of_one_axis(dtype, axis, keepdims):
    data = (np.random.default_rng(1).standard_normal((2, 3, 5)) * 100).astype(dtype)
    rtol = 1e-3 if dtype == np.float16 else 1e-6
    _check("ReduceMean", data, [np.int64([axis])], {"keepdims": keepdims}, rtol=rtol)
    _check("ReduceMean", data, [], {"axes": [axis], "keepdims": keepdims}, opset=13, rtol=rtol)


def test_reduce_mean_of_several_axes_and_of_all():
    data = np.random.default_rng(2).standard_normal((2, 3, 4)).astype(np.float32)
    _check("ReduceMean", data, [np.int64([0, 2])], {"keepdims": 1}, rtol=1e-6)
    _check("ReduceMean", data, [], rtol=1e-6)


_EDGES = np.array([-2.5, -0.0, 0.0, 1e-30, 3.0, 1e30, np.inf, -np.inf, np.nan], np.float32)


@pytest.mark.parametrize("op", ["Sqrt", "Relu", "Exp", "Neg", "Abs", "Tanh", "Sigmoid"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("shape", [(9,), (3, 3), ()], ids=["1d", "2d", "0d"])
def test_unary_float_ops_computed_as_they_are(op, dtype, shape):
    with np.errstate(over="ignore"):  # 1e30 is inf in float16
        data = _EDGES.astype(dtype)
    data = data.reshape(shape) if shape else data[4:5].reshape(())
    _check(op, data, [], opset=14, rtol=1e-6 if dtype != np.float16 else 1e-3)


@pytest.mark.parametrize("x_dtype,y_dtype", [(np.float32, np.float32), (np.float64, np.float64),
                                             (np.float32, np.float64), (np.float32, np.int64),
                                             (np.float16, np.float16), (np.int32, np.int32)])
@pytest.mark.parametrize("y", [2, 0.5, -1, 3])
def test_pow_of_same_and_mixed_types(x_dtype, y_dtype, y):
    if np.dtype(y_dtype).kind == "i" and not float(y).is_integer():
        pytest.skip("an integer exponent is whole")
    x = np.array([-2, -0.5, 0, 0.5, 1.5, 3], np.float64).astype(x_dtype)
    if np.dtype(x_dtype).kind == "i":
        x = np.array([-2, 0, 1, 3], x_dtype)
    rtol = 1e-3 if x_dtype == np.float16 else 1e-6
    _check("Pow", x, [np.array(y, y_dtype)], opset=15, rtol=rtol)
    _check("Pow", x[3:4].reshape(()), [np.array(y, y_dtype)], opset=15, rtol=rtol)


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp"])
def test_a_reduction_over_an_empty_axis_gives_what_onnxruntime_gives(op):
    """ReduceMean of an empty set is 0 in onnxruntime (not NaN), as the sums are."""
    _check(op, np.zeros((2, 0, 3), np.float32), [np.array([1], np.int64)], {"keepdims": 1})
