"""The methods of onnxruntime 1.32's classes exist in ortgpu, and the secondary session API
(ortgpu.session_extensions, the C-level forms) behaves as onnxruntime's."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime
import onnxruntime.capi.onnxruntime_pybind11_state as ort_state
import pytest
from onnx import TensorProto, external_data_helper, helper, numpy_helper

from support import model_builders as mb
import ortgpu
import ortgpu.capi.onnxruntime_pybind11_state as ortgpu_state
from ortgpu.errors import NotImplemented as OrtNotImplemented

# methods another part of ortgpu provides (custom-op libraries), checked where they are built
ELSEWHERE = {("SessionOptions", "register_custom_ops_library")}


@pytest.mark.parametrize("module_pair", ["top", "capi"])
def test_every_public_method_exists(module_pair):
    theirs_mod, ours_mod = (onnxruntime, ortgpu) if module_pair == "top" else (ort_state, ortgpu_state)
    missing = []
    for cls in ("InferenceSession", "SessionOptions", "RunOptions", "OrtValue", "IOBinding", "SessionIOBinding",
                "SparseTensor", "OrtDevice", "OrtMemoryInfo", "OrtEpDevice", "OrtValueVector"):
        theirs, ours = getattr(theirs_mod, cls, None), getattr(ours_mod, cls, None)
        if theirs is None:
            continue
        for name in dir(theirs):
            if name.startswith("_") or not callable(getattr(theirs, name, None)) or (cls, name) in ELSEWHERE:
                continue
            if not hasattr(ours, name):
                missing.append(f"{cls}.{name}")
    assert missing == [], f"onnxruntime {onnxruntime.__version__} methods missing in ortgpu: {missing}"


def _pair():
    model = mb.identity().SerializeToString()
    return (onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"]),
            ortgpu.InferenceSession(model, providers=["CPUExecutionProvider"]))


def test_memory_infos_and_input_devices_like_onnxruntime():
    ref, got = _pair()
    for method in ("get_input_memory_infos", "get_output_memory_infos"):
        r, g = getattr(ref, method)(), getattr(got, method)()
        assert [(m.name, m.device_id, int(m.mem_type)) for m in g] == [(m.name, m.device_id, int(m.mem_type))
                                                                      for m in r]
    r, g = ref.get_input_epdevices(), got.get_input_epdevices()
    assert len(r) == len(g) == 1 and r[0].ep_name == g[0].ep_name == "CPUExecutionProvider"


def test_graph_assignment_info_like_onnxruntime():
    g = helper.make_graph([helper.make_node("Add", ["A", "B"], ["t"], name="add_0"),
                           helper.make_node("Mul", ["t", "B"], ["Y"], name="mul_0")], "g",
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in "AB"],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    infos = []
    for mod in (onnxruntime, ortgpu):
        so = mod.SessionOptions()
        with pytest.raises(mod.capi.onnxruntime_pybind11_state.Fail, match="record_ep_graph_assignment_info"):
            mod.InferenceSession(m.SerializeToString(), so).get_provider_graph_assignment_info()
        so.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
        subgraphs = mod.InferenceSession(m.SerializeToString(), so).get_provider_graph_assignment_info()
        infos.append(sorted((s.ep_name, n.domain, n.op_type, n.name) for s in subgraphs for n in s.get_nodes()))
    assert infos[1] == infos[0]


def test_tuning_results_and_dynamic_options_like_onnxruntime():
    ref, got = _pair()
    assert got.get_tuning_results() == ref.get_tuning_results() == []
    bad = [{"ep": "UnknownEP", "results": {}, "validators": {}}]
    for sess in (ref, got):
        sess.set_tuning_results(bad)  # ignored without error_on_invalid
        with pytest.raises(RuntimeError, match="Cannot find execution provider UnknownEP"):
            sess.set_tuning_results(bad, error_on_invalid=True)
        assert sess.set_ep_dynamic_options({"ep.dynamic.anything": "1"}) is None
    assert got._sess.webgpu_context_id() == ref._sess.webgpu_context_id()
    assert got._sess.is_webgpu_graph_capture_enabled() is ref._sess.is_webgpu_graph_capture_enabled() is False


def test_run_with_ortvaluevector_like_onnxruntime():
    ref, got = _pair()
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    outs = []
    for mod, state, sess in ((onnxruntime, ort_state, ref), (ortgpu, ortgpu_state, got)):
        feeds, fetches = state.OrtValueVector(), state.OrtValueVector()
        feeds.push_back(mod.OrtValue.ortvalue_from_numpy(x)._ortvalue)
        assert sess.run_with_ortvaluevector(mod.RunOptions(), ["x"], feeds, ["y"], fetches,
                                            [state.OrtDevice(0, 0, 0)]) is None
        outs.append(fetches[0].numpy())
    np.testing.assert_array_equal(outs[1], outs[0])


def test_c_level_session_and_binding_forms_like_onnxruntime():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    results = []
    for mod, state in ((onnxruntime, ort_state), (ortgpu, ortgpu_state)):
        sess = mod.InferenceSession(mb.identity().SerializeToString(), providers=["CPUExecutionProvider"])
        cpu = state.OrtDevice(state.OrtDevice.cpu(), state.OrtDevice.default_memory(), 0)
        vect = sess._sess.run_with_ort_values({"x": mod.OrtValue.ortvalue_from_numpy(x)._get_c_value()}, ["y"],
                                              state.RunOptions())
        assert isinstance(vect, state.OrtValueVector)
        value = state.OrtValue.ortvalue_from_numpy(x, cpu)
        out = mod.OrtValue.ortvalue_from_shape_and_type([2, 3], np.float32)
        bind = state.SessionIOBinding(sess._sess)
        bind.bind_input("x", cpu, np.float32, [2, 3], value.data_ptr())
        bind.bind_output("y", cpu, np.float32, [2, 3], out.data_ptr())
        sess._sess.run_with_iobinding(bind, None)
        bind2 = state.SessionIOBinding(sess._sess)
        bind2.bind_ortvalue_input("x", value)
        bind2.bind_output("y", cpu)
        sess._sess.run_with_iobinding(bind2, None)
        assert isinstance(bind2.get_outputs(), state.OrtValueVector)
        results.append((vect[0].numpy(), out.numpy(), bind2.get_outputs()[0].numpy()))
    for r, g in zip(*results):
        np.testing.assert_array_equal(g, r)


def test_check_and_normalize_provider_args_like_onnxruntime():
    from onnxruntime.capi.onnxruntime_inference_collection import check_and_normalize_provider_args as ref_fn

    from ortgpu.capi.onnxruntime_inference_collection import check_and_normalize_provider_args as got_fn
    valid = ["a", "b", "c"]
    cases = [(None, None), (["a"], None), ([("a", {1: 2}), "b"], None), (["a", "b"], [{1: 2}, {}]),
             (["a", "b", "a"], [{"x": 1}, {}, {"y": 2}]), (["d"], None)]
    for providers, options in cases:
        with warnings.catch_warnings(record=True) as wr:
            warnings.simplefilter("always")
            ref = ref_fn(providers, options, valid)
        with warnings.catch_warnings(record=True) as wg:
            warnings.simplefilter("always")
            got = got_fn(providers, options, valid)
        assert got == ref, (providers, options)
        assert [str(w.message) for w in wg] == [str(w.message) for w in wr]
    for providers, options in [(3, None), ([3], None), (["a"], 3), (["a"], ["x"]), (["a", "b"], [{}]),
                               ([("a", {})], [{}])]:
        with pytest.raises(ValueError):
            ref_fn(providers, options, valid)
        with pytest.raises(ValueError):
            got_fn(providers, options, valid)


def test_external_files_from_memory_like_onnxruntime(tmp_path, monkeypatch):
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    g = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], "g",
                          [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 3])],
                          [numpy_helper.from_array(w, "W")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    external_data_helper.convert_model_to_external_data(m, location="w.bin", size_threshold=0)
    onnx.save(m, str(tmp_path / "m.onnx"))
    data = (tmp_path / "w.bin").read_bytes()
    (tmp_path / "w.bin").unlink()
    monkeypatch.chdir(tmp_path)
    outs = []
    for mod in (onnxruntime, ortgpu):
        so = mod.SessionOptions()
        so.add_external_initializers_from_files_in_memory(["w.bin"], [data], [len(data)])
        outs.append(mod.InferenceSession((tmp_path / "m.onnx").read_bytes(), so).run(
            None, {"X": np.ones((1, 2), np.float32)})[0])
    np.testing.assert_array_equal(outs[1], outs[0])
    np.testing.assert_array_equal(outs[1], np.ones((1, 2), np.float32) @ w)


@pytest.mark.parametrize("call", [
    lambda so: so.add_provider("CUDAExecutionProvider", {}),
    lambda so: so.add_provider_for_devices(ortgpu.get_ep_devices(), {}),
    lambda so: so.set_provider_selection_policy(ortgpu.OrtExecutionProviderDevicePolicy.PREFER_GPU),
    lambda so: so.set_provider_selection_policy_delegate(lambda *a: []),
    lambda so: so.set_ep_context_data_read_func(lambda *a: None),
    lambda so: so.set_load_cancellation_flag(True),
    lambda so: ortgpu.RunOptions().add_active_adapter(object()),
], ids=["add_provider", "add_provider_for_devices", "policy", "policy_delegate", "ep_context_read", "cancel",
        "active_adapter"])
def test_what_cannot_apply_is_refused_with_a_reason(call):
    so = ortgpu.SessionOptions()
    with pytest.raises(OrtNotImplemented, match="NOT_IMPLEMENTED : .{40,}"):
        call(so)
    assert so.has_providers() is False
    so.set_load_cancellation_flag(False)
    so.clear_ep_context_data_read_func()


def test_sparse_views_are_read_only_like_onnxruntime():
    for mod in (onnxruntime, ortgpu):
        st = mod.SparseTensor.sparse_coo_from_numpy([9, 9], np.array(["x", "y"], dtype=str),
                                                    np.array([3, 5], np.int64), mod.OrtDevice.make("cpu", 0))
        assert st.dense_shape() == [9, 9] and st.data_type() == "sparse_tensor(string)"
        assert not st.as_coo_view().indices().flags.writeable
        num = mod.SparseTensor.sparse_coo_from_numpy([9], np.ones(2, np.float32), np.array([3, 5], np.int64),
                                                     mod.OrtDevice.make("cpu", 0))
        assert not num.values().flags.writeable
