"""InferenceSession, SessionOptions, RunOptions and module functions against onnxruntime 1.31."""
from __future__ import annotations

import contextlib
import io
import pathlib
import warnings

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import helper

from support import model_builders as mb
import ortgpu
import ortgpu.capi.onnxruntime_pybind11_state as ortgpu_state

onnxruntime.set_default_logger_severity(3)
CPU = ["CPUExecutionProvider"]


def both(m: onnx.ModelProto, **kw):
    data = m.SerializeToString()
    return (onnxruntime.InferenceSession(data, providers=CPU, **kw),
            ortgpu.InferenceSession(data, providers=CPU, **kw))


def _optional_seq_model():
    opt = helper.make_optional_type_proto(helper.make_sequence_type_proto(
        helper.make_tensor_type_proto(mb.FLOAT, None)))
    return mb.model([helper.make_node("Identity", ["o"], ["p"])],
                    [helper.make_value_info("o", opt)], [helper.make_value_info("p", opt)])


NODEARG_MODELS = {
    "symbolic": mb.identity,
    "scalar": lambda: mb.identity(shape=[]),
    "no_shape": lambda: mb.identity(shape=None),
    "unknown_dim": lambda: mb.identity(shape=[None, "N", 2]),
    "int64": lambda: mb.identity(shape=[4], elem=mb.INT64),
    "string": lambda: mb.identity(shape=["S"], elem=onnx.TensorProto.STRING),
    "two_in_three_out": mb.two_inputs_three_outputs,
    "ir3_initializer_inputs": lambda: mb.with_initializer_input(3),
    "ir4_overridable": lambda: mb.with_initializer_input(4),
    "sequence": mb.sequence_identity,
    "optional": mb.optional_identity,
    "optional_sequence": _optional_seq_model,
    "denotation": mb.denoted_identity,
    "local_function": mb.local_function_model,
}


@pytest.mark.parametrize("name", sorted(NODEARG_MODELS))
def test_node_args_match_onnxruntime(name):
    ref, got = both(NODEARG_MODELS[name]())
    assert mb.node_args(got.get_inputs()) == mb.node_args(ref.get_inputs())
    assert mb.node_args(got.get_outputs()) == mb.node_args(ref.get_outputs())
    assert mb.node_args(got.get_overridable_initializers()) == mb.node_args(ref.get_overridable_initializers())


def test_node_arg_str_matches_onnxruntime():
    ref, got = both(mb.two_inputs_three_outputs())
    assert str(got.get_inputs()[0]) == str(ref.get_inputs()[0])


def test_model_sources(tmp_path):
    m = mb.identity()
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for src in (str(path), path, pathlib.PurePath(str(path)), m.SerializeToString(), m):
        s = ortgpu.InferenceSession(src)
        np.testing.assert_array_equal(s.run(None, {"x": x})[0], x)
    with pytest.raises(TypeError, match="Unable to load from type"):
        ortgpu.InferenceSession(42)


def test_positional_and_keyword_arguments():
    data = mb.identity().SerializeToString()
    so = ortgpu.SessionOptions()
    s = ortgpu.InferenceSession(data, so, CPU, [{}])
    assert s.get_providers() == CPU and s.get_session_options() is so
    s = ortgpu.InferenceSession(path_or_bytes=data, sess_options=None, providers=None, provider_options=None)
    assert "CPUExecutionProvider" in s.get_providers()
    assert isinstance(s.get_session_options(), ortgpu.SessionOptions)


def test_run_output_selection_matches_onnxruntime():
    ref, got = both(mb.two_inputs_three_outputs())
    feed = {"a": np.random.rand(2, 5).astype(np.float32), "b": np.arange(4)}
    for names in (None, [], ["yb"], ["yc", "ya"], ("yb", "ya", "yc"), ["ya", "ya"]):
        expected = ref.run(names, feed)
        actual = got.run(names, feed)
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert a.dtype == e.dtype
            np.testing.assert_array_equal(a, e)


def test_run_with_run_options():
    ro = ortgpu.RunOptions()
    ro.logid = "r1"
    ro.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    s = ortgpu.InferenceSession(mb.identity().SerializeToString())
    x = np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(s.run(None, {"x": x}, ro)[0], x)
    np.testing.assert_array_equal(s.run(None, {"x": x}, run_options=None)[0], x)


def test_terminate_flag_matches_onnxruntime():
    ref, got = both(mb.identity())
    feed = {"x": np.ones((1, 3), np.float32)}
    results = []
    for mod, sess in ((onnxruntime, ref), (ortgpu, got)):
        ro = mod.RunOptions()
        ro.terminate = True
        results.append(mb.outcome(lambda: sess.run(None, feed, ro)))
    assert results[1] == results[0]
    assert results[0][0] == "Fail"


def test_modelmeta_matches_onnxruntime():
    m = mb.two_inputs_three_outputs()
    m.graph.doc_string = "graph doc"
    helper.set_model_props(m, {"author": "me", "license": "MIT"})
    ref, got = both(m)
    fields = ["producer_name", "graph_name", "domain", "description", "graph_description", "version",
              "custom_metadata_map"]
    for f in fields:
        assert getattr(got.get_modelmeta(), f) == getattr(ref.get_modelmeta(), f), f


def test_providers_queries_and_set_providers():
    ref, got = both(mb.identity())
    assert got.get_providers() == ref.get_providers() == CPU
    assert got.get_provider_options() == ref.get_provider_options()
    got.set_providers(["CPUExecutionProvider"], [{}])
    assert got.get_providers() == CPU
    got.set_providers()
    assert got.get_providers() == ortgpu.get_available_providers()
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(got.run(None, {"x": x})[0], x)


def test_session_options_defaults_match_onnxruntime():
    ref, got = onnxruntime.SessionOptions(), ortgpu.SessionOptions()
    public = [a for a in dir(ref) if not a.startswith("_") and not callable(getattr(ref, a))]
    assert public, "onnxruntime's SessionOptions lists no fields?"
    for a in public:
        r, g = getattr(ref, a), getattr(got, a)
        if hasattr(r, "name") and hasattr(r, "value"):  # pybind enums
            assert (g.name, int(g)) == (r.name, int(r)), a
        else:
            assert g == r and type(g) is type(r), a
    ours = {a for a in dir(got) if not a.startswith("_") and not callable(getattr(got, a))}
    assert ours == set(public)
    for method in ("add_session_config_entry", "get_session_config_entry", "add_initializer",
                   "add_free_dimension_override_by_name", "add_free_dimension_override_by_denotation"):
        assert callable(getattr(got, method))


def test_run_options_defaults_match_onnxruntime():
    ref, got = onnxruntime.RunOptions(), ortgpu.RunOptions()
    public = [a for a in dir(ref) if not a.startswith("_") and not callable(getattr(ref, a))]
    for a in public:
        assert getattr(got, a) == getattr(ref, a), a
    assert {a for a in dir(got) if not a.startswith("_") and not callable(getattr(got, a))} == set(public)


@pytest.mark.parametrize("field,value", [
    ("intra_op_num_threads", "2"), ("enable_profiling", "yes"), ("logid", 3),
    ("graph_optimization_level", 5), ("execution_mode", "parallel"), ("optimized_model_filepath", 1.5),
])
def test_session_options_field_types_match_onnxruntime(field, value):
    ref = mb.outcome(lambda: setattr(onnxruntime.SessionOptions(), field, value))
    got = mb.outcome(lambda: setattr(ortgpu.SessionOptions(), field, value))
    assert got[0] == ref[0] == "TypeError"


def test_session_options_setters_and_unknown_field():
    so = ortgpu.SessionOptions()
    so.graph_optimization_level = ortgpu.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.execution_mode = ortgpu.ExecutionMode.ORT_PARALLEL
    so.intra_op_num_threads = 2
    so.enable_profiling = True
    so.logid = "x"
    assert so.graph_optimization_level == ortgpu.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert so.execution_mode == ortgpu.ExecutionMode.ORT_PARALLEL
    assert (so.intra_op_num_threads, so.enable_profiling, so.logid) == (2, True, "x")
    # onnxruntime's own enum members are accepted too, as code may mix the two modules
    so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert so.graph_optimization_level == ortgpu.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = mb.outcome(lambda: setattr(onnxruntime.SessionOptions(), "no_such_field", 1))
    got = mb.outcome(lambda: setattr(ortgpu.SessionOptions(), "no_such_field", 1))
    assert got[0] == ref[0] == "AttributeError"


def test_config_entries_match_onnxruntime():
    for mod in (onnxruntime, ortgpu):
        so = mod.SessionOptions()
        so.add_session_config_entry("session.disable_prepacking", "1")
        assert so.get_session_config_entry("session.disable_prepacking") == "1"
        ro = mod.RunOptions()
        ro.add_run_config_entry("k", "v")
        assert ro.get_run_config_entry("k") == "v"
    for getter in (lambda m: m.SessionOptions().get_session_config_entry("missing.key"),
                   lambda m: m.RunOptions().get_run_config_entry("missing.key")):
        ref, got = mb.outcome(lambda: getter(onnxruntime)), mb.outcome(lambda: getter(ortgpu))
        assert got == ref
        assert ref[0] == "RuntimeError"
    ref = mb.outcome(lambda: onnxruntime.SessionOptions().add_session_config_entry("k", 1))
    got = mb.outcome(lambda: ortgpu.SessionOptions().add_session_config_entry("k", 1))
    assert got[0] == ref[0] == "TypeError"


def test_free_dimension_override_by_name():
    results = []
    for mod in (onnxruntime, ortgpu):
        so = mod.SessionOptions()
        so.add_free_dimension_override_by_name("N", 2)
        s = mod.InferenceSession(mb.identity().SerializeToString(), so, providers=CPU)
        shapes = (s.get_inputs()[0].shape, s.get_outputs()[0].shape)
        ok = s.run(None, {"x": np.ones((2, 3), np.float32)})[0].shape
        bad = mb.outcome(lambda: s.run(None, {"x": np.ones((4, 3), np.float32)}))
        results.append((shapes, ok, bad))
    assert results[1] == results[0]
    assert results[0][0] == ([2, 3], [2, 3])
    with pytest.raises(TypeError):
        ortgpu.SessionOptions().add_free_dimension_override_by_name("N", 2.5)


def test_free_dimension_override_by_denotation():
    results = []
    for mod in (onnxruntime, ortgpu):
        so = mod.SessionOptions()
        so.add_free_dimension_override_by_denotation("DATA_BATCH", 5)
        s = mod.InferenceSession(mb.denoted_identity().SerializeToString(), so, providers=CPU)
        results.append((s.get_inputs()[0].shape, s.get_outputs()[0].shape,
                        s.run(None, {"x": np.ones((5, 4), np.float32)})[0].shape,
                        mb.outcome(lambda: s.run(None, {"x": np.ones((3, 4), np.float32)}))[0]))
    assert results[1] == results[0]
    assert results[0][:3] == ([5, 4], [5, 4], (5, 4))


def test_enums_match_onnxruntime():
    for name in ("GraphOptimizationLevel", "ExecutionMode", "ExecutionOrder"):
        ref, got = getattr(onnxruntime, name), getattr(ortgpu, name)
        assert {k: int(v) for k, v in got.__members__.items()} == {k: int(v) for k, v in ref.__members__.items()}
        for k in ref.__members__:
            assert str(getattr(got, k)) == str(getattr(ref, k))


def test_module_functions():
    if mb.ORT_IS_ORACLE:
        ours, theirs = ortgpu.get_all_providers(), onnxruntime.get_all_providers()
        assert ours == theirs, (
            f"onnxruntime {onnxruntime.__version__}'s provider list differs from the one ortgpu follows "
            f"(onnxruntime {'.'.join(map(str, mb.ORACLE_PIN))}): it added {sorted(set(theirs) - set(ours))}, "
            f"dropped {sorted(set(ours) - set(theirs))}; update ALL_PROVIDERS on purpose")
    avail = ortgpu.get_available_providers()
    assert avail[-1] == "CPUExecutionProvider"
    assert set(avail) <= set(ortgpu.get_all_providers())
    assert ortgpu.get_device() in ("CPU", "GPU")
    assert (ortgpu.get_device() == "GPU") == ("CUDAExecutionProvider" in avail)
    assert isinstance(ortgpu.__version__, str) and ortgpu.__version__.count(".") >= 1


def test_exception_classes_match_onnxruntime():
    import onnxruntime.capi.onnxruntime_pybind11_state as ref_state
    ref_names = {n for n in dir(ref_state)
                 if isinstance(getattr(ref_state, n), type) and issubclass(getattr(ref_state, n), Exception)}
    for n in ref_names:
        assert issubclass(getattr(ortgpu_state, n), Exception), n
    for n in ("Fail", "InvalidArgument", "NoSuchFile", "NoModel", "InvalidProtobuf", "InvalidGraph",
              "NotImplemented", "RuntimeException", "EPFail"):
        assert getattr(ortgpu, n) is getattr(ortgpu_state, n)
    from ortgpu.capi.onnxruntime_pybind11_state import InvalidArgument
    s = ortgpu.InferenceSession(mb.identity().SerializeToString())
    try:
        s.run(None, {"x": np.ones((1, 3), np.float64)})
    except InvalidArgument as e:
        assert str(e).startswith("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : ")
    else:
        pytest.fail("no InvalidArgument")


# --- provider arguments -------------------------------------------------------------------
def _session_with(mod, **kw):
    """(providers, warning texts, stdout text) of a session made with these arguments."""
    out = io.StringIO()
    with warnings.catch_warnings(record=True) as w, contextlib.redirect_stdout(out):
        warnings.simplefilter("always")
        s = mod.InferenceSession(mb.identity().SerializeToString(), **kw)
    return s.get_providers(), [str(x.message) for x in w], out.getvalue()


def test_provider_forms():
    for kw in (dict(providers=["CPUExecutionProvider"]),
               dict(providers=[("CPUExecutionProvider", {})]),
               dict(providers=["CPUExecutionProvider"], provider_options=[{}]),
               dict(providers=[])):
        ref, got = _session_with(onnxruntime, **kw), _session_with(ortgpu, **kw)
        assert ref[0] == CPU and got[0][-1] == "CPUExecutionProvider", kw
        assert got[1] == [], kw


@pytest.mark.parametrize("kw", [
    dict(providers=["CPUExecutionProvider"], provider_options=[{}, {}]),
    dict(providers=[("CPUExecutionProvider", {})], provider_options=[{}]),
    dict(providers=[1]),
], ids=["length_mismatch", "tuples_with_options", "bad_item"])
def test_bad_provider_arguments_fall_back_like_onnxruntime(kw):
    # onnxruntime's InferenceSession retries once with the CPU on a ValueError ...
    ref = _session_with(onnxruntime, **kw)
    got = _session_with(ortgpu, **kw)
    assert ref[0] == CPU and got[0] == CPU
    # onnxruntime prints its fallback notice on stdout
    assert "Falling back to ['CPUExecutionProvider'] and retrying." in ref[2], "onnxruntime's notice changed"
    assert "Falling back to ['CPUExecutionProvider'] and retrying." in got[2]
    # ... and raises it when the fallback is disabled.
    ref = mb.outcome(lambda: onnxruntime.InferenceSession(mb.identity().SerializeToString(),
                                                          enable_fallback=0, **kw))
    got = mb.outcome(lambda: ortgpu.InferenceSession(mb.identity().SerializeToString(),
                                                     enable_fallback=0, **kw))
    assert got[0] == "ValueError"
    if ref[0] == "ValueError":  # onnxruntime checks unknown names in C++ (RuntimeError there)
        assert got[1].split(".")[0] == ref[1].split(".")[0]


@pytest.mark.parametrize("providers", [["FooExecutionProvider"], ["FooExecutionProvider", "CPUExecutionProvider"]])
def test_unknown_provider_name_warns_and_falls_back_like_onnxruntime(providers):
    # onnxruntime: a "not in available provider names" warning, then its C layer refuses the
    # name, and the session prints the EP Error notice and retries on the CPU alone.
    ref = _session_with(onnxruntime, providers=providers)
    got = _session_with(ortgpu, providers=providers)
    assert ref[0] == got[0] == CPU
    warned = "Specified provider 'FooExecutionProvider' is not in available provider names."
    assert any(m.startswith(warned) for m in ref[1]), f"onnxruntime's warnings changed: {ref[1]}"
    assert any(m.startswith(warned) for m in got[1]), got[1]
    notice = f"EP Error Unknown Provider Type: FooExecutionProvider when using {providers}"
    assert notice in ref[2], f"onnxruntime's fallback notice changed: {ref[2]!r}"
    assert notice in got[2] and "Falling back to ['CPUExecutionProvider'] and retrying." in got[2]
    # without the fallback both raise the C layer's RuntimeError
    ref = mb.outcome(lambda: onnxruntime.InferenceSession(mb.identity().SerializeToString(), providers=providers,
                                                          enable_fallback=0))
    assert ref[0] == "RuntimeError" and ref[1].startswith("Unknown Provider Type: FooExecutionProvider"), ref
    with pytest.raises(RuntimeError, match="^Unknown Provider Type: FooExecutionProvider"):
        ortgpu.InferenceSession(mb.identity().SerializeToString(), providers=providers, enable_fallback=0)


@pytest.mark.parametrize("name", ["TensorrtExecutionProvider", "CUDAExecutionProvider"])
def test_unavailable_provider_warns_and_falls_back(name):
    if name in ortgpu.get_available_providers():
        pytest.skip(f"{name} is available here")
    ref = _session_with(onnxruntime, providers=[name, "CPUExecutionProvider"])
    got = _session_with(ortgpu, providers=[name, "CPUExecutionProvider"])
    assert got[0] == ref[0] == CPU
    prefix = f"Specified provider '{name}' is not in available provider names."
    assert any(m.startswith(prefix) for m in ref[1]) and any(m.startswith(prefix) for m in got[1])


def test_duplicate_provider_warns_like_onnxruntime():
    kw = dict(providers=["CPUExecutionProvider", "CPUExecutionProvider"])
    ref, got = _session_with(onnxruntime, **kw), _session_with(ortgpu, **kw)
    assert got == ref
    assert got[1] == ["Duplicate provider 'CPUExecutionProvider' encountered, ignoring."]


def test_cpu_provider_ignores_options_like_onnxruntime():
    kw = dict(providers=[("CPUExecutionProvider", {"foo": "1"})])
    ref = onnxruntime.InferenceSession(mb.identity().SerializeToString(), **kw)
    got = ortgpu.InferenceSession(mb.identity().SerializeToString(), **kw)
    assert got.get_provider_options() == ref.get_provider_options() == {"CPUExecutionProvider": {}}


def test_provider_creation_failure_falls_back_to_cpu_once(monkeypatch):
    from ortgpu import providers_select

    real_create = providers_select.create
    calls = []

    def failing_first(pairs):
        calls.append([n for n, _ in pairs])
        if len(calls) == 1:
            raise RuntimeError("bad option")  # what a provider raises for an invalid option value
        return real_create(pairs)

    monkeypatch.setattr(providers_select, "create", failing_first)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        sess = ortgpu.InferenceSession(mb.identity().SerializeToString(), providers=["CPUExecutionProvider"])
    assert "Falling back to ['CPUExecutionProvider'] and retrying." in out.getvalue()
    assert sess.get_providers() == ["CPUExecutionProvider"] and len(calls) == 2
    calls.clear()
    with pytest.raises(RuntimeError, match="bad option"):
        ortgpu.InferenceSession(mb.identity().SerializeToString(), providers=["CPUExecutionProvider"],
                                enable_fallback=0)
