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


# --- item 2: RegexFullMatch runs RE2 (linear time) and refuses what RE2 refuses -------------
def _regex_model(pattern: str) -> bytes:
    return _model([h.make_node("RegexFullMatch", ["x"], ["y"], pattern=pattern)],
                  [h.make_tensor_value_info("x", T.STRING, [None])], [h.make_tensor_value_info("y", T.BOOL, [None])],
                  opset=20)


def test_regex_catastrophic_pattern_is_linear_time():
    import time  # noqa: PLC0415
    texts = np.array(["a" * 28, "a" * 40, "a" * 5000, "aaab"], dtype=object)
    want, got = _both(_regex_model("(a+)+b"), {"x": texts})
    t0 = time.perf_counter()
    ortgpu.InferenceSession(_regex_model("(a+)+b"), providers=CPU).run(None, {"x": texts})
    assert time.perf_counter() - t0 < 2.0  # Python's re took 16 s on 28 characters
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[0], [False, False, False, True])


@pytest.mark.parametrize("pattern", ["(a)\\1", "(?=a)a", "a(?!b)", "a{1001}", "[z-a]", "(", "a**", "\\Z", "x{2,1}"])
def test_regex_patterns_re2_refuses_fail_at_load(pattern):
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.Fail):
        ort.InferenceSession(_regex_model(pattern), providers=CPU)
    with pytest.raises(errors.Fail, match="RegexFullMatch"):
        ortgpu.InferenceSession(_regex_model(pattern), providers=CPU)


@pytest.mark.parametrize("pattern", ["\\p{Greek}+", "(?i)A.*", "\\d+", "(?P<n>a)b", "é+", "[[:alpha:]]+"])
def test_regex_re2_syntax_matches_onnxruntime(pattern):
    texts = np.array(["a", "ab", "AbC", "123", "éé", "αβγ", "", "Ab"], dtype=object)
    want, got = _both(_regex_model(pattern), {"x": texts})
    np.testing.assert_array_equal(got[0], want[0])


# --- item 4: malformed external-data fields are typed Fail -----------------------------------
def _external_model(folder, fields: dict) -> str:
    (folder / "w.bin").write_bytes(np.arange(16, dtype=np.float32).tobytes())
    t = onnx.TensorProto(name="w", data_type=T.FLOAT, dims=[4], data_location=T.EXTERNAL)
    for k, v in fields.items():
        t.external_data.add(key=k, value=v)
    m = _model([h.make_node("Add", ["x", "w"], ["y"])], [h.make_tensor_value_info("x", T.FLOAT, [4])],
               [h.make_tensor_value_info("y", T.FLOAT, [4])], initializers=[t])
    path = folder / "m.onnx"
    path.write_bytes(m)
    return str(path)


@pytest.mark.parametrize("fields", [
    {"offset": "abc"}, {"length": "1e3"}, {"length": "-16"}, {"offset": " 4", "length": "16"},
    {"offset": "0x10"}, {"offset": "+8"}, {"offset": "-4", "length": "16"}, {"length": "8"}, {"offset": "60", "length": "16"}],
    ids=lambda f: repr(f))
def test_bad_external_data_fields_fail_like_onnxruntime(tmp_path, fields):
    path = _external_model(tmp_path, {"location": "w.bin", **fields})
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.Fail):
        ort.InferenceSession(path, providers=CPU)
    with pytest.raises(errors.Fail, match="'w'"):
        ortgpu.InferenceSession(path, providers=CPU)


def test_nul_byte_in_external_location_is_fail(tmp_path):
    path = _external_model(tmp_path, {"location": "w\x00.bin"})
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.Fail):
        ort.InferenceSession(path, providers=CPU)
    with pytest.raises(errors.Fail, match="NUL"):
        ortgpu.InferenceSession(path, providers=CPU)


@pytest.mark.parametrize("fields", [{"offset": "4", "length": "16"}, {"checksum": "zz"}, {"offset": "8"}])
def test_good_external_data_fields_match_onnxruntime(tmp_path, fields):
    path = _external_model(tmp_path, {"location": "w.bin", **fields})
    x = np.ones(4, np.float32)
    want = ort.InferenceSession(path, providers=CPU).run(None, {"x": x})
    got = ortgpu.InferenceSession(path, providers=CPU).run(None, {"x": x})
    np.testing.assert_array_equal(got[0], want[0])


# --- item 5: a huge sparse declaration is refused before anything is allocated ----------------
def _sparse_model(dims) -> bytes:
    vals = onnx.numpy_helper.from_array(np.array([1.5], np.float32), "s")
    idx = onnx.numpy_helper.from_array(np.array([5], np.int64), "i")
    g = h.make_graph([h.make_node("ReduceSum", ["s"], ["y"], keepdims=0)], "g", [],
                     [h.make_tensor_value_info("y", T.FLOAT, [])],
                     sparse_initializer=[h.make_sparse_tensor(vals, idx, dims)])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 13)]).SerializeToString()


def test_huge_sparse_initializer_is_refused_with_its_size():
    m = _sparse_model([10**6, 10**6])
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.Fail, match="exceeds"):
        ort.InferenceSession(m, providers=CPU)
    with pytest.raises(errors.Fail, match=r"s \(dims \[1000000, 1000000\]\).*4000000000000 bytes"):
        ortgpu.InferenceSession(m, providers=CPU)


def test_small_sparse_initializer_still_runs():
    want, got = _both(_sparse_model([3, 4]), {})
    np.testing.assert_array_equal(got[0], want[0])


# --- item 6: only regular files of at most 2 GB are read ------------------------------------
def test_endless_model_file_is_refused_before_reading():
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidProtobuf):
        ort.InferenceSession("/dev/zero", providers=CPU)
    with pytest.raises(errors.InvalidProtobuf, match="not a regular file"):
        ortgpu.InferenceSession("/dev/zero", providers=CPU)


def test_fifo_model_file_is_refused_without_blocking(tmp_path):
    import os  # noqa: PLC0415
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer exists, so opening does not block
    try:
        with pytest.raises(errors.InvalidProtobuf, match="not a regular file"):
            ortgpu.InferenceSession(str(fifo), providers=CPU)
    finally:
        os.close(fd)


def test_model_file_above_protobuf_limit_is_refused(tmp_path):
    big = tmp_path / "big.onnx"
    with open(big, "wb") as f:  # a sparse file: no disk is used
        f.truncate(2**31 + 10)
    with pytest.raises(errors.InvalidProtobuf, match="more than protobuf's limit"):
        ortgpu.InferenceSession(str(big), providers=CPU)


# --- item 9: invalid UTF-8 in names is a typed InvalidGraph at load ---------------------------
def _relu_with_attribute_name(name: bytes) -> bytes:
    n = h.make_node("Relu", ["x"], ["y"])
    n.attribute.add(name="ok", type=onnx.AttributeProto.INT, i=1)
    m = _model([n], [h.make_tensor_value_info("x", T.FLOAT, [2])], [h.make_tensor_value_info("y", T.FLOAT, [2])])
    return m.replace(b"\x02ok", bytes([len(name)]) + name)


def test_invalid_utf8_attribute_name_is_invalid_graph():
    m = _relu_with_attribute_name(b"\xff\xfe")
    with pytest.raises(errors.InvalidGraph, match="not valid UTF-8"):
        ortgpu.InferenceSession(m, providers=CPU)


def test_invalid_utf8_value_name_is_invalid_graph():
    m = _model([h.make_node("Relu", ["x"], ["yy"])], [h.make_tensor_value_info("x", T.FLOAT, [2])],
               [h.make_tensor_value_info("yy", T.FLOAT, [2])])
    with pytest.raises(errors.InvalidGraph, match="not valid UTF-8"):
        ortgpu.InferenceSession(m.replace(b"\x02yy", b"\x02\xc3\x28"), providers=CPU)


# --- item 11: the profiler stops recording at a cap and says so ------------------------------
def test_profiler_caps_records_and_notes_it(tmp_path, monkeypatch):
    import json  # noqa: PLC0415

    from ortgpu.profiling.recorder import Recorder  # noqa: PLC0415
    assert Recorder.max_records == 1_000_000  # onnxruntime's cap
    monkeypatch.setattr(Recorder, "max_records", 40)
    m = _model([h.make_node("Relu", ["x"], ["a"]), h.make_node("Neg", ["a"], ["y"])],
               [h.make_tensor_value_info("x", T.FLOAT, [2])], [h.make_tensor_value_info("y", T.FLOAT, [2])])
    so = ortgpu.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "p")
    sess = ortgpu.InferenceSession(m, so, providers=CPU)
    for _ in range(200):
        sess.run(None, {"x": np.ones(2, np.float32)})
    assert len(sess._recorder._records) < 40 + 8  # at most one run past the cap
    with open(sess.end_profiling()) as f:
        events = json.load(f)
    nodes = [e for e in events if e["cat"] == "Node"]
    assert 0 < len(nodes) < 40
    assert {e["args"]["op_name"] for e in nodes} == {"Relu", "Neg"}  # whole runs, replayed correctly
    notes = [e["args"]["note"] for e in events if e["name"] == "note"]
    assert any("stopped recording" in n for n in notes), notes


# --- item 13: external data of a model from bytes needs a named folder, and stays in it ------
_FOLDER_KEY = "session.model_external_initializers_file_folder_path"


def _bytes_with_external(location: str) -> bytes:
    t = onnx.TensorProto(name="w", data_type=T.FLOAT, dims=[4], data_location=T.EXTERNAL)
    t.external_data.add(key="location", value=location)
    return _model([h.make_node("Add", ["x", "w"], ["y"])], [h.make_tensor_value_info("x", T.FLOAT, [4])],
                  [h.make_tensor_value_info("y", T.FLOAT, [4])], initializers=[t])


def test_bytes_model_external_data_is_refused_without_folder(tmp_path, monkeypatch):
    (tmp_path / "w.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    monkeypatch.chdir(tmp_path)  # the file is right there in the working directory
    m = _bytes_with_external("w.bin")
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.Fail):  # onnxruntime: "model_path must not be empty"
        ort.InferenceSession(m, providers=CPU)
    with pytest.raises(errors.Fail, match=_FOLDER_KEY):
        ortgpu.InferenceSession(m, providers=CPU)
    proto = onnx.load_from_string(m)
    with pytest.raises(errors.Fail, match=_FOLDER_KEY):
        ortgpu.InferenceSession(proto, providers=CPU)


def test_bytes_model_external_data_read_from_named_folder(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "w.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    x = np.ones(4, np.float32)
    results = []
    for mod in (ort, ortgpu):
        so = mod.SessionOptions()
        so.add_session_config_entry(_FOLDER_KEY, str(folder))
        results.append(mod.InferenceSession(_bytes_with_external("w.bin"), so, providers=CPU).run(None, {"x": x}))
    np.testing.assert_array_equal(results[1][0], results[0][0])


@pytest.mark.parametrize("location", ["../secret.bin", "sub/../../secret.bin", "/etc/passwd", "etc/passwd"])
def test_bytes_model_external_data_confined_to_folder(tmp_path, location):
    folder = tmp_path / "weights"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"s" * 16)
    so = ortgpu.SessionOptions()
    so.add_session_config_entry(_FOLDER_KEY, str(folder))
    with pytest.raises(errors.Fail, match="External data path validation failed"):
        ortgpu.InferenceSession(_bytes_with_external(location), so, providers=CPU)


# --- item 14: feeds onnxruntime accepts -------------------------------------------------------
def _concat_model() -> bytes:
    return _model([h.make_node("StringConcat", ["x", "x"], ["y"])], [h.make_tensor_value_info("x", T.STRING, [2])],
                  [h.make_tensor_value_info("y", T.STRING, [2])], opset=20)


@pytest.mark.parametrize("feed", [
    np.array([b"ab", "c\u00e9".encode()], dtype=object), np.array([b"ab", b"cd"]),
    np.array(["ab", b"cd"], dtype=object)], ids=["object-bytes", "S-array", "mixed"])
def test_string_feed_of_bytes_is_decoded_as_utf8(feed):
    got = ortgpu.InferenceSession(_concat_model(), providers=CPU).run(None, {"x": feed})[0]
    want = [(v.decode() if isinstance(v, bytes) else v) * 2 for v in feed.tolist()]
    assert got.tolist() == want and all(type(v) is str for v in got.ravel())
    if feed.dtype == object:  # onnxruntime accepts these (it writes str(b'...') for bytes: not followed);
        # for an S array it reads past the strings (output 'abcd,V' or a UnicodeDecodeError)
        ort.InferenceSession(_concat_model(), providers=CPU).run(None, {"x": feed})


def test_string_feed_of_other_objects_uses_str_like_onnxruntime():
    feed = np.array([1, 2.5], dtype=object)
    want, got = _both(_concat_model(), {"x": feed})
    assert got[0].tolist() == want[0].tolist() == ["11", "2.52.5"]


def test_string_feed_of_invalid_utf8_is_invalid_argument():
    with pytest.raises(errors.InvalidArgument, match="'x'.*not valid UTF-8"):
        ortgpu.InferenceSession(_concat_model(), providers=CPU).run(None, {"x": np.array([b"\xff", b"a"], dtype=object)})


@pytest.mark.parametrize("elements", [[(2,), (3, 3)], [(3,)], [(2,), (2,)]], ids=["ranks", "dims", "declared"])
def test_sequence_elements_of_other_shapes_match_onnxruntime(elements):
    m = _model([h.make_node("SequenceAt", ["s", "i"], ["y"])],
               [h.make_tensor_sequence_value_info("s", T.FLOAT, [2]), h.make_tensor_value_info("i", T.INT64, [])],
               [h.make_tensor_value_info("y", T.FLOAT, None)])
    seq = [np.arange(np.prod(s), dtype=np.float32).reshape(s) for s in elements]
    want, got = _both(m, {"s": seq, "i": np.array(len(seq) - 1)})
    np.testing.assert_array_equal(got[0], want[0])


def test_sequence_element_of_wrong_type_is_still_refused():
    m = _model([h.make_node("SequenceAt", ["s", "i"], ["y"])],
               [h.make_tensor_sequence_value_info("s", T.FLOAT, [2]), h.make_tensor_value_info("i", T.INT64, [])],
               [h.make_tensor_value_info("y", T.FLOAT, None)])
    with pytest.raises(errors.InvalidArgument, match="double"):
        ortgpu.InferenceSession(m, providers=CPU).run(None, {"s": [np.ones(2)], "i": np.array(0)})


# --- item 12: what onnxruntime refuses at load (or at run) is refused, with its error class ----
def _F(name, shape, t=T.FLOAT):
    return h.make_tensor_value_info(name, t, shape)


_ONE = np.ones(2, np.float32)
_REFUSED = {  # name: (model bytes, feeds)
    "output_declared_int64": (_model([h.make_node("Relu", ["x"], ["y"])], [_F("x", [2])], [_F("y", [2], T.INT64)]),
                              {"x": _ONE}),
    "add_float_int64": (_model([h.make_node("Add", ["x", "z"], ["y"])], [_F("x", [2]), _F("z", [2], T.INT64)],
                               [_F("y", [2])]), {"x": _ONE, "z": np.ones(2, np.int64)}),
    "conv_dilations_0": (_model([h.make_node("Conv", ["x", "w"], ["y"], dilations=[0, 0])],
                                [_F("x", [1, 1, 4, 4]), _F("w", [1, 1, 2, 2])], [_F("y", None)]),
                         {"x": np.ones((1, 1, 4, 4), np.float32), "w": np.ones((1, 1, 2, 2), np.float32)}),
    "maxpool_pads_ge_kernel": (_model([h.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], pads=[2, 2, 2, 2])],
                                      [_F("x", [1, 1, 4, 4])], [_F("y", None)]),
                               {"x": np.ones((1, 1, 4, 4), np.float32)}),
    "if_two_element_condition": (_model([h.make_node(
        "If", ["c"], ["y"], then_branch=h.make_graph([h.make_node("Identity", ["x"], ["t"])], "then", [], [_F("t", [2])]),
        else_branch=h.make_graph([h.make_node("Neg", ["x"], ["e"])], "else", [], [_F("e", [2])]))],
        [_F("c", [2], T.BOOL), _F("x", [2])], [_F("y", [2])]), {"c": np.array([True, False]), "x": _ONE}),
    "duplicate_graph_inputs": (_model([h.make_node("Relu", ["x"], ["y"])], [_F("x", [2]), _F("x", [2])],
                                      [_F("y", [2])]), {"x": _ONE}),
    "no_outputs": (_model([h.make_node("Relu", ["x"], ["y"])], [_F("x", [2])], []), {"x": _ONE}),
    "string_into_relu": (_model([h.make_node("Relu", ["x"], ["y"])], [_F("x", [2], T.STRING)], [_F("y", [2], T.STRING)]),
                         {"x": np.array(["a", "b"], dtype=object)}),
    "unknown_attribute": (_model([h.make_node("Relu", ["x"], ["y"], foo=1)], [_F("x", [2])], [_F("y", [2])]),
                          {"x": _ONE}),
    "missing_required_attribute": (_model([h.make_node("Cast", ["x"], ["y"])], [_F("x", [2])], [_F("y", [2])]),
                                   {"x": _ONE}),
    "attribute_of_wrong_type": (_model([h.make_node("Concat", ["x", "x"], ["y"], axis=1.5)], [_F("x", [2])],
                                       [_F("y", [4])]), {"x": _ONE}),
    "too_many_inputs": (_model([h.make_node("Relu", ["x", "x"], ["y"])], [_F("x", [2])], [_F("y", [2])]), {"x": _ONE}),
    "matmul_incompatible": (_model([h.make_node("MatMul", ["x", "w"], ["y"])], [_F("x", [2, 3]), _F("w", [4, 2])],
                                   [_F("y", None)]),
                            {"x": np.ones((2, 3), np.float32), "w": np.ones((4, 2), np.float32)}),
}


@pytest.mark.parametrize("case", sorted(_REFUSED))
def test_models_onnxruntime_refuses_are_refused_with_its_class(case):
    model, feeds = _REFUSED[case]
    want, got = _both(model, feeds)
    assert isinstance(want, Exception), want
    assert isinstance(got, errors._OrtError), got
    assert _same_error_class(want, got), (want, got)


_TOLERATED = {  # onnx's strict inference complains; onnxruntime runs these
    "output_shape_differs": (_model([h.make_node("Relu", ["x"], ["y"])], [_F("x", [2])], [_F("y", [3])]), {"x": _ONE}),
    "output_rank_differs": (_model([h.make_node("Relu", ["x"], ["y"])], [_F("x", [2])], [_F("y", [2, 1])]),
                            {"x": _ONE}),
    "nodes_out_of_order": (_model([h.make_node("Neg", ["a"], ["y"]), h.make_node("Relu", ["x"], ["a"])],
                                  [_F("x", [2])], [_F("y", [2])]), {"x": _ONE}),
    "gather_index_out_of_range_constant": (_model(
        [h.make_node("Gather", ["x", "i"], ["y"])], [_F("x", [2])], [_F("y", None)],
        initializers=[h.make_tensor("i", T.INT64, [1], [1])]), {"x": _ONE}),
}


@pytest.mark.parametrize("case", sorted(_TOLERATED))
def test_models_onnxruntime_runs_still_run(case):
    model, feeds = _TOLERATED[case]
    want, got = _both(model, feeds)
    assert not isinstance(want, Exception), want
    assert not isinstance(got, Exception), got
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_string_feed_of_void_records_is_read_as_bytes_like_onnxruntime():
    g = h.make_graph([h.make_node("Identity", ["x"], ["y"])], "g",
                          [h.make_tensor_value_info("x", T.STRING, [2, 2])],
                          [h.make_tensor_value_info("y", T.STRING, [2, 2])])
    model = h.make_model(g, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()
    x = np.array([b"must", b"have", b"same", b"size"], dtype=np.void).reshape((2, 2))
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ortgpu.InferenceSession(model).run(None, {"x": x})[0]
    assert got.dtype == object and got.tolist() == want.tolist() == [["must", "have"], ["same", "size"]]


def test_a_graph_output_declaring_another_type_than_its_initializer_runs_like_onnxruntime():
    """Fuzz seeds 2403/6061/8827/9380/9986: an output renamed onto an int64 initializer that a
    Loop reads, declared float; onnxruntime keeps the initializer's type and runs."""
    body = h.make_graph([h.make_node("Identity", ["c_in"], ["c_out"]),
                         h.make_node("Add", ["v_in", "x"], ["v_out"])], "body",
                        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("c_in", T.BOOL, []),
                         h.make_tensor_value_info("v_in", T.FLOAT, [3])],
                        [h.make_tensor_value_info("c_out", T.BOOL, []), h.make_tensor_value_info("v_out", T.FLOAT, [3])])
    g = h.make_graph([h.make_node("Loop", ["M", "", "x"], ["v"], body=body)], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, [3])],
                     [h.make_tensor_value_info("M", T.FLOAT, [3]), h.make_tensor_value_info("v", T.FLOAT, [3])],
                     [h.make_tensor("M", T.INT64, [], [3])])
    model = h.make_model(g, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()
    feed = {"x": np.array([1.0, 2.0, 3.0], np.float32)}
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)
    got = ortgpu.InferenceSession(model).run(None, feed)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
