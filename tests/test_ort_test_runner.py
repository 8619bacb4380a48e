"""scripts/run_ort_python_tests.py: its stand-in testdata models load in onnxruntime and in
ortgpu with the same inputs and outputs (the runner compares the two on them), and its
onnx.mapping shim gives the entries onnxruntime's iobinding tests read."""
from __future__ import annotations

import importlib.util
import pathlib
import sys
import types

import numpy as np
import onnxruntime
import pytest

import ortgpu

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "run_ort_python_tests.py"


@pytest.fixture(scope="module")
def runner():
    spec = importlib.util.spec_from_file_location("run_ort_python_tests", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _io(sess):
    return ([(i.name, i.type, i.shape) for i in sess.get_inputs()],
            [(o.name, o.type, o.shape) for o in sess.get_outputs()])


def test_stand_in_models_load_alike(runner):
    models = runner._stand_in_models()
    assert "mul_1.onnx" in models and len(models) >= 10
    for name, proto in models.items():
        data = proto.SerializeToString()
        so = onnxruntime.SessionOptions()
        so.log_severity_level = 3
        if "external" in name:
            pads = onnxruntime.OrtValue.ortvalue_from_numpy(np.array([0, 0, 1, 1], np.int64))
            so.add_external_initializers(["Pads_not_on_disk"], [pads])
            ours = ortgpu.SessionOptions()
            ours.add_external_initializers(["Pads_not_on_disk"], [np.array([0, 0, 1, 1], np.int64)])
        else:
            ours = ortgpu.SessionOptions()
        ref = onnxruntime.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        got = ortgpu.InferenceSession(data, ours, providers=["CPUExecutionProvider"])
        assert _io(got) == _io(ref), name


def test_mul_1_stand_in_computes_what_the_tests_expect(runner):
    data = runner._stand_in_models()["mul_1.onnx"].SerializeToString()
    x = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], np.float32)
    for mod in (onnxruntime, ortgpu):
        np.testing.assert_array_equal(mod.InferenceSession(data).run(None, {"X": x})[0], x * x)


def test_onnx_mapping_shim(runner, monkeypatch):
    import onnx
    from onnx import TensorProto
    had = "onnx.mapping" in sys.modules
    monkeypatch.delitem(sys.modules, "onnx.mapping", raising=False)
    try:
        exec(compile(runner.ONNX_MAPPING_SHIM, "onnx_mapping_shim", "exec"), {})  # noqa: S102
        mapping = sys.modules["onnx.mapping"]
        assert isinstance(mapping, types.ModuleType)
        assert mapping.TENSOR_TYPE_MAP[TensorProto.FLOAT16].np_dtype == np.float16
        assert mapping.TENSOR_TYPE_MAP[TensorProto.BOOL].np_dtype == np.bool_
    finally:  # the shim is for the runner's subprocesses: leave this process as it was
        if not had:
            sys.modules.pop("onnx.mapping", None)
            if hasattr(onnx, "mapping"):
                delattr(onnx, "mapping")
