"""run_async, add_initializer / add_external_initializers, bind_output to CUDA without a GPU,
.ort models, and set_seed, against onnxruntime."""
from __future__ import annotations

import threading

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, external_data_helper, helper, numpy_helper

from support import model_builders as mb
import ortgpu
from ortgpu.errors import Fail, InvalidProtobuf


# --- run_async ---------------------------------------------------------------------------------
def _run_async(mod, feed, output_names=None):
    sess = mod.InferenceSession(mb.identity().SerializeToString(), providers=["CPUExecutionProvider"])
    done, got = threading.Event(), {}

    def callback(results, user_data, err):
        got.update(results=results, user_data=user_data, err=err, thread=threading.current_thread())
        done.set()

    assert sess.run_async(output_names, feed, callback, "data") is None
    assert done.wait(30), f"{mod.__name__}: the callback was not called"
    return got


def test_run_async_delivers_results_like_onnxruntime():
    feed = {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}
    ref, got = _run_async(onnxruntime, feed), _run_async(ortgpu, feed)
    assert ref["err"] == got["err"] == "" and ref["user_data"] == got["user_data"] == "data"
    assert isinstance(got["results"], list) and len(got["results"]) == len(ref["results"]) == 1
    np.testing.assert_array_equal(got["results"][0], ref["results"][0])
    assert got["thread"] is not threading.main_thread() and ref["thread"] is not threading.main_thread()


@pytest.mark.parametrize("feed, outputs, text", [
    ({"x": np.ones((1, 3), np.float64)}, None, "Unexpected input data type"),
    ({"x": np.ones((1, 3), np.float32)}, ["nope"], "Invalid output name: nope"),
], ids=["wrong_type", "wrong_output"])
def test_run_async_reports_errors_to_the_callback_like_onnxruntime(feed, outputs, text):
    ref, got = _run_async(onnxruntime, feed, outputs), _run_async(ortgpu, feed, outputs)
    assert ref["results"] == got["results"] == []
    assert text in ref["err"], f"onnxruntime's message changed: {ref['err']!r}"
    # (ortgpu words errors as onnxruntime's synchronous run does, e.g. "Invalid output name:nope")
    assert text.replace(" ", "") in got["err"].replace(" ", "") and not got["err"].startswith("[ONNXRuntimeError]")


def test_run_async_checks_required_inputs_and_callback_at_once():
    for mod in (onnxruntime, ortgpu):
        sess = mod.InferenceSession(mb.identity().SerializeToString(), providers=["CPUExecutionProvider"])
        with pytest.raises(ValueError, match=r"Required inputs \(\['x'\]\) are missing from input feed"):
            sess.run_async(None, {"zz": np.ones((1, 3), np.float32)}, lambda *a: None, None)
        with pytest.raises(TypeError):
            sess.run_async(None, {"x": np.ones((1, 3), np.float32)}, 5, None)


# --- initializers from memory --------------------------------------------------------------------
W = np.arange(6, dtype=np.float32).reshape(2, 3)
NEW = np.full((2, 3), 10, np.float32)
X = np.ones((1, 2), np.float32)


def _matmul_model() -> onnx.ModelProto:
    g = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], "g",
                          [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 3])],
                          [numpy_helper.from_array(W, "W")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@pytest.fixture
def external_model_bytes(tmp_path, monkeypatch) -> bytes:
    """A model whose W is external data in a file that cannot be found from where it is loaded."""
    m = _matmul_model()
    external_data_helper.convert_model_to_external_data(m, all_tensors_to_one_file=True, location="w.bin",
                                                        size_threshold=0)
    onnx.save(m, str(tmp_path / "ext.onnx"))
    (tmp_path / "w.bin").unlink()
    monkeypatch.chdir(tmp_path)
    return (tmp_path / "ext.onnx").read_bytes()


def _outcome(mod, model, setup):
    so = mod.SessionOptions()
    setup(mod, so)
    return mb.outcome(lambda: mod.InferenceSession(model, so, providers=["CPUExecutionProvider"]).run(
        None, {"X": X})[0])


_KEEP = []  # onnxruntime's SessionOptions keep raw pointers to added OrtValues: they must outlive the session


def _ov(mod, a):
    a = np.array(a)
    _KEEP.append(a)
    _KEEP.append(mod.OrtValue.ortvalue_from_numpy(a))
    return _KEEP[-1]


@pytest.mark.parametrize("setup, expect", [
    (lambda mod, so: so.add_external_initializers(["W"], [_ov(mod, NEW)]), "ok"),
    (lambda mod, so: None, "Fail"),
    (lambda mod, so: so.add_initializer("W", _ov(mod, NEW)), "Fail"),  # add_initializer does not stand in for the file
    (lambda mod, so: so.add_external_initializers(["W"], [_ov(mod, np.zeros((3, 3), np.float32))]), "Fail"),
    (lambda mod, so: so.add_external_initializers(["W"], [_ov(mod, np.zeros((2, 3), np.float64))]), "Fail"),
    (lambda mod, so: so.add_external_initializers(["Q"], [_ov(mod, NEW)]), "Fail"),
], ids=["supplied", "missing_file", "add_initializer", "wrong_shape", "wrong_type", "unknown_name"])
def test_external_initializers_from_memory_like_onnxruntime(external_model_bytes, setup, expect):
    ref = _outcome(onnxruntime, external_model_bytes, setup)
    got = _outcome(ortgpu, external_model_bytes, setup)
    assert ref[0] == expect, f"onnxruntime's behaviour changed: {ref}"
    assert got[0] == expect, got
    if expect == "ok":
        np.testing.assert_array_equal(got[1], ref[1])
        np.testing.assert_array_equal(got[1], X @ NEW)


@pytest.mark.parametrize("setup, expect", [
    (lambda mod, so: so.add_initializer("W", _ov(mod, NEW)), "ok"),
    (lambda mod, so: so.add_initializer("Q", _ov(mod, NEW)), "ok"),
    (lambda mod, so: so.add_external_initializers(["W"], [_ov(mod, NEW)]), "Fail"),  # W is not external
], ids=["override", "unknown_ignored", "external_on_internal"])
def test_add_initializer_like_onnxruntime(setup, expect):
    model = _matmul_model().SerializeToString()
    ref, got = _outcome(onnxruntime, model, setup), _outcome(ortgpu, model, setup)
    assert ref[0] == got[0] == expect, (ref, got)
    if expect == "ok":
        np.testing.assert_array_equal(got[1], ref[1])


def test_initializer_arguments_are_checked_like_onnxruntime():
    for mod in (onnxruntime, ortgpu):
        so = mod.SessionOptions()
        with pytest.raises(RuntimeError, match="must be an OrtValue"):
            so.add_initializer("W", "not a tensor")
        with pytest.raises(RuntimeError):
            so.add_external_initializers(["W", "Z"], [_ov(mod, NEW)])


# --- bind_output to CUDA on a CPU-only session ---------------------------------------------------------
def test_bind_output_to_cuda_without_gpu_like_onnxruntime():
    if "CUDAExecutionProvider" in ortgpu.get_available_providers():
        pytest.skip("a GPU is present: outputs bound to cuda go there")
    x = np.array([[-1.0, 2.0, -3.0]], np.float32)
    outs = []
    for mod in (onnxruntime, ortgpu):
        sess = mod.InferenceSession(mb.identity().SerializeToString(), providers=["CPUExecutionProvider"])
        b = sess.io_binding()
        b.bind_cpu_input("x", x)
        b.bind_output("y", "cuda")
        sess.run_with_iobinding(b)
        assert b.get_outputs()[0].device_name() == "cpu", mod.__name__
        outs.append(b.copy_outputs_to_cpu()[0])
    np.testing.assert_array_equal(outs[1], outs[0])


# --- .ort models ---------------------------------------------------------------------------------
def test_ort_format_model_is_refused_with_the_way_back(tmp_path):
    path = str(tmp_path / "m.ort")
    so = onnxruntime.SessionOptions()
    so.optimized_model_filepath = path
    so.add_session_config_entry("session.save_model_format", "ORT")
    onnxruntime.InferenceSession(mb.identity().SerializeToString(), so, providers=["CPUExecutionProvider"])
    assert onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"]).run(
        None, {"x": np.ones((1, 3), np.float32)})  # onnxruntime reads it
    for source in (path, open(path, "rb").read()):
        with pytest.raises(InvalidProtobuf, match="ORT format model") as e:
            ortgpu.InferenceSession(source)
        assert ".onnx" in str(e.value) and "convert_onnx_models_to_ort" in str(e.value)


# --- set_seed ---------------------------------------------------------------------------------------
def _random_model() -> bytes:
    g = helper.make_graph([helper.make_node("RandomUniform", [], ["y"], shape=[4], dtype=TensorProto.FLOAT)], "g",
                          [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m.SerializeToString()


def _two_runs(mod, seed):
    if seed is not None:
        mod.set_seed(seed)
    sess = mod.InferenceSession(_random_model(), providers=["CPUExecutionProvider"])
    return sess.run(None, {})[0], sess.run(None, {})[0]


@pytest.mark.parametrize("mod", [onnxruntime, ortgpu], ids=["onnxruntime", "ortgpu"])
def test_set_seed_makes_unseeded_random_ops_repeat(mod):
    # the property onnxruntime's global seed gives: a new session after the same set_seed draws the
    # same sequence, and successive runs of one session still differ (the values are the library's own)
    first = _two_runs(mod, 1234)
    again = _two_runs(mod, 1234)
    other = _two_runs(mod, 99)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], other[0])
    assert all(((0 <= r) & (r < 1)).all() for r in first)
