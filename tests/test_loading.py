"""Model loading: sources, malformed models, versions, external data, local functions,
with onnxruntime 1.31's exception classes and messages as the reference."""
from __future__ import annotations

import os
import shutil

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import helper

from support import model_builders as mb
import ortgpu
from ortgpu.providers.cpu import CPUExecutionProvider
from ortgpu.providers.registry import schema_for

onnxruntime.set_default_logger_severity(3)
CPU = ["CPUExecutionProvider"]
X = np.arange(6, dtype=np.float32).reshape(2, 3)


def load_both(src):
    return (mb.outcome(lambda: onnxruntime.InferenceSession(src, providers=CPU)),
            mb.outcome(lambda: ortgpu.InferenceSession(src, providers=CPU)))


def _graph(nodes, **kw):
    return mb.model(nodes, [helper.make_tensor_value_info("x", mb.FLOAT, [1])],
                    [helper.make_tensor_value_info(kw.pop("out", "y"), mb.FLOAT, [1])], **kw)


# --- sources and bytes ----------------------------------------------------------------
def test_missing_file_matches_onnxruntime(tmp_path):
    ref, got = load_both(str(tmp_path / "absent.onnx"))
    assert got == ref
    assert got[0] == "NoSuchFile"


def test_directory_matches_onnxruntime(tmp_path):
    ref, got = load_both(str(tmp_path))
    assert got[0] == ref[0] == "InvalidProtobuf"
    assert got[1].startswith(ref[1].rstrip("."))


@pytest.mark.parametrize("data", [b"\x12\x34garbage\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f"],
                         ids=["garbage", "bad_length"])
def test_garbage_bytes_match_onnxruntime(data):
    ref, got = load_both(data)
    assert got[0] == ref[0] == "InvalidProtobuf"
    assert got[1].startswith(ref[1].rstrip("."))


def test_truncated_model_matches_onnxruntime():
    data = mb.big_initializer_model().SerializeToString()
    for cut in (len(data) // 2, len(data) - 3, 40):
        ref, got = load_both(data[:cut])
        assert got[0] == ref[0], (cut, ref, got)
        assert got[0] != "ok"


def test_empty_bytes_and_missing_graph_match_onnxruntime():
    ref, got = load_both(b"")
    assert got == ref == ("InvalidArgument", "No graph was found in the protobuf.")
    m = onnx.ModelProto()
    m.ir_version = 8
    ref, got = load_both(m.SerializeToString())
    assert got == ref


def test_model_proto_is_not_changed_by_loading():
    m = mb.local_function_model()
    before = m.SerializeToString()
    s = ortgpu.InferenceSession(m)
    s.run(None, {"x": np.ones(3, np.float32)})
    assert m.SerializeToString() == before


# --- malformed graphs ---------------------------------------------------------------------
def test_cycle_matches_onnxruntime():
    m = _graph([helper.make_node("Identity", ["b"], ["a"], name="n1"),
                helper.make_node("Identity", ["a"], ["b"], name="n2")], out="b")
    ref, got = load_both(m.SerializeToString())
    assert got[0] == ref[0] == "Fail"
    assert got[1].startswith(ref[1])


def test_undefined_value_matches_onnxruntime():
    m = _graph([helper.make_node("Identity", ["nope"], ["y"], name="n1")])
    ref, got = load_both(m.SerializeToString())
    assert got == ref
    assert got[0] == "InvalidArgument" and "'nope'" in got[1]


def test_unknown_ai_onnx_op_matches_onnxruntime():
    m = _graph([helper.make_node("NoSuchOp", ["x"], ["y"], name="n0")])
    ref, got = load_both(m.SerializeToString())
    assert got[0] == ref[0] == "InvalidGraph"
    key = "Error No Op registered for NoSuchOp with domain_version of 21"
    assert key in ref[1] and key in got[1] and '("n0", NoSuchOp, ""' in got[1]


def test_custom_domain_op_without_kernel_matches_onnxruntime():
    m = _graph([helper.make_node("Frob", ["x"], ["y"], name="frob0", domain="my.domain")],
               extra_opsets=[("my.domain", 1)])
    ref, got = load_both(m.SerializeToString())
    assert got[0] == ref[0] == "Fail"
    assert got[1].startswith(ref[1])
    assert "frob0" in got[1]


def test_domain_not_imported_matches_onnxruntime():
    m = _graph([helper.make_node("Frob", ["x"], ["y"], name="frob0", domain="my.domain")])
    ref, got = load_both(m.SerializeToString())
    assert got[0] == ref[0] == "InvalidGraph"
    assert "my.domain" in got[1]


def test_op_without_kernel_is_not_implemented(monkeypatch):
    # Take Abs away from the CPU provider (it has no function body to expand into), so that
    # the test does not depend on which kernels exist yet.
    original = CPUExecutionProvider.kernel_for

    def without_abs(self, op_type, domain, opset):
        return None if op_type == "Abs" else original(self, op_type, domain, opset)

    monkeypatch.setattr(CPUExecutionProvider, "kernel_for", without_abs)
    assert not schema_for("Abs", 13, "").has_function
    m = mb.model([helper.make_node("Abs", ["x"], ["y"], name="lonely")],
                 [helper.make_tensor_value_info("x", mb.FLOAT, [2])],
                 [helper.make_tensor_value_info("y", mb.FLOAT, [2])], opset=13)
    with pytest.raises(ortgpu.NotImplemented) as info:
        ortgpu.InferenceSession(m.SerializeToString(), providers=CPU)
    msg = str(info.value)
    assert "Abs(13)" in msg and "'lonely'" in msg and "ai.onnx" in msg


# --- versions -----------------------------------------------------------------------------
@pytest.mark.parametrize("ir", [1, 2, 3, 4, 7, 10])
def test_old_ir_versions_match_onnxruntime(ir):
    m = mb.identity(ir_version=ir, opset=7)
    data = m.SerializeToString()
    ref = onnxruntime.InferenceSession(data, providers=CPU).run(None, {"x": X})
    got = ortgpu.InferenceSession(data, providers=CPU).run(None, {"x": X})
    np.testing.assert_array_equal(got[0], ref[0])


def test_too_new_ir_version_matches_onnxruntime():
    m = mb.identity(ir_version=onnx.IR_VERSION + 1)
    ref, got = load_both(m.SerializeToString())
    assert got[0] == ref[0] == "Fail"
    assert f"Unsupported model IR version: {onnx.IR_VERSION + 1}, max supported IR version:" in got[1]


def test_missing_opset_import_matches_onnxruntime():
    m = mb.identity()
    m.ClearField("opset_import")
    ref, got = load_both(m.SerializeToString())
    assert got[0] == ref[0] == "Fail"
    assert "Missing opset in the model" in got[1] and "Missing opset in the model" in ref[1]


def test_opset_beyond_onnx_is_refused():
    m = mb.identity(opset=onnx.defs.onnx_opset_version() + 5)
    got = mb.outcome(lambda: ortgpu.InferenceSession(m.SerializeToString()))
    assert got[0] == "Fail" and "Opset" in got[1]


@pytest.mark.parametrize("opset", [7, 13, 18, 21, 25])
def test_same_op_at_several_opsets_matches_onnxruntime(opset):
    data = mb.identity(opset=opset).SerializeToString()
    got = ortgpu.InferenceSession(data, providers=CPU).run(None, {"x": X})
    np.testing.assert_array_equal(got[0], X)
    if mb.ORT_IS_ORACLE:
        ref = onnxruntime.InferenceSession(data, providers=CPU).run(None, {"x": X})
        np.testing.assert_array_equal(got[0], ref[0])


def test_newest_opset_runs():
    s = ortgpu.InferenceSession(mb.identity(opset=onnx.defs.onnx_opset_version()).SerializeToString())
    np.testing.assert_array_equal(s.run(None, {"x": X})[0], X)


# --- model-local functions ----------------------------------------------------------------
def test_local_function_matches_onnxruntime():
    data = mb.local_function_model().SerializeToString()
    x = np.array([1.0, -2.0, 3.5], np.float32)
    ref = onnxruntime.InferenceSession(data, providers=CPU).run(None, {"x": x})
    got = ortgpu.InferenceSession(data, providers=CPU).run(None, {"x": x})
    np.testing.assert_array_equal(got[0], ref[0])


def test_nested_local_functions():
    inner = helper.make_function("local.fn", "Inner", ["a"], ["b"], [helper.make_node("Identity", ["a"], ["b"])],
                                 [helper.make_opsetid("", mb.ORT_OPSET)])
    outer = helper.make_function("local.fn", "Outer", ["a"], ["b"],
                                 [helper.make_node("Inner", ["a"], ["t"], domain="local.fn"),
                                  helper.make_node("Identity", ["t"], ["b"])],
                                 [helper.make_opsetid("", mb.ORT_OPSET), helper.make_opsetid("local.fn", 1)])
    m = mb.model([helper.make_node("Outer", ["x"], ["y"], domain="local.fn")],
                 [helper.make_tensor_value_info("x", mb.FLOAT, [3])],
                 [helper.make_tensor_value_info("y", mb.FLOAT, [3])],
                 extra_opsets=[("local.fn", 1)], functions=[inner, outer])
    x = np.array([1.0, 2.0, 3.0], np.float32)
    ref = onnxruntime.InferenceSession(m.SerializeToString(), providers=CPU).run(None, {"x": x})
    got = ortgpu.InferenceSession(m.SerializeToString(), providers=CPU).run(None, {"x": x})
    np.testing.assert_array_equal(got[0], ref[0])


# --- external data ------------------------------------------------------------------------
@pytest.fixture
def external_model(tmp_path):
    """A model folder with model.onnx and its weights in w.bin; returns (folder, path)."""
    folder = tmp_path / "model_dir"
    folder.mkdir()
    path = folder / "model.onnx"
    onnx.save(mb.big_initializer_model(), str(path), save_as_external_data=True, location="w.bin",
              size_threshold=0)
    assert (folder / "w.bin").exists()
    return folder, path


def test_external_data_relative_to_model_folder(external_model, tmp_path, monkeypatch):
    folder, path = external_model
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    ref = onnxruntime.InferenceSession(str(path), providers=CPU).run(None, {})
    got = ortgpu.InferenceSession(str(path), providers=CPU).run(None, {})
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[0], np.arange(4096, dtype=np.float32).reshape(64, 64))
    got = ortgpu.InferenceSession(path).run(None, {})  # os.PathLike
    np.testing.assert_array_equal(got[0], ref[0])


def test_external_data_from_bytes_elsewhere_matches_onnxruntime(external_model, tmp_path, monkeypatch):
    folder, path = external_model
    monkeypatch.chdir(tmp_path)
    ref, got = load_both(path.read_bytes())
    assert got[0] == "Fail"
    assert ref[0] == "Fail" or not mb.ORT_IS_ORACLE


def _relocate(path, location):
    m = onnx.load(str(path), load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    onnx.save(m, str(path))


@pytest.mark.parametrize("where", ["escape", "absolute", "missing", "escape_nested"])
def test_bad_external_locations_match_onnxruntime(external_model, tmp_path, where):
    folder, path = external_model
    shutil.copy(folder / "w.bin", tmp_path / "x.bin")  # the file exists: only its place is wrong
    location = {"escape": "../x.bin", "absolute": str(tmp_path / "x.bin"), "missing": "nothere.bin",
                "escape_nested": "sub/../../x.bin"}[where]
    _relocate(path, location)
    ref, got = load_both(str(path))
    assert got[0] == "Fail", got
    assert got[1].startswith("External data path validation failed for initializer: w. Error: ")
    key = {"escape": "escapes model directory", "absolute": "Absolute path not allowed",
           "missing": "does not exist", "escape_nested": "escapes model directory"}[where]
    assert key in got[1]
    if mb.ORT_IS_ORACLE:  # onnxruntime before 1.31 loaded some of these
        assert ref[0] == "Fail" and key in ref[1], ref


def test_external_data_out_of_file_bounds_matches_onnxruntime(external_model):
    folder, path = external_model
    m = onnx.load(str(path), load_external_data=False)
    t = m.graph.initializer[0]
    offsets = [e for e in t.external_data if e.key == "offset"]
    entry = offsets[0] if offsets else t.external_data.add()
    entry.key, entry.value = "offset", "100000"
    onnx.save(m, str(path))
    ref, got = load_both(str(path))
    assert got[0] == "Fail"
    assert ref[0] == "Fail" or not mb.ORT_IS_ORACLE
    assert "w" in got[1] and "100000" in got[1]
