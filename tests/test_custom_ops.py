"""Custom ops in Python (ortgpu.custom_ops): the subclass style and the decorator, on the CPU
provider and on the device double as a CUDA stand-in; per-session registration, declared
types and shapes for shape inference, placement with copies, profiling, saved optimized
models.  Oracles: the same computation in NumPy, and onnxruntime running the same model with
onnxruntime-extensions' Python ops (PyOp)."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import ortgpu
from support.device_double import FakeArray, providers as double_providers
from ortgpu.providers.registry import lookup

CPU = ["CPUExecutionProvider"]
DEV = "FakeDeviceExecutionProvider"
DOMAIN = "test.customops"
F, I64 = TensorProto.FLOAT, TensorProto.INT64


class Scale(ortgpu.CustomOp):
    """y = x * alpha, a host (NumPy) kernel in the tutorial's subclass style."""
    inputs = ["float"]
    outputs = ["float"]
    attrs = {"alpha": 1.0}
    calls = 0

    def Compute(self, inputs, outputs, attributes):
        type(self).calls += 1
        assert isinstance(inputs[0], np.ndarray)  # a host kernel always sees NumPy arrays
        outputs[0] = inputs[0] * np.float32(attributes["alpha"])

    def infer_shapes(self, input_shapes, attributes):
        return input_shapes[0]


class MinMax(ortgpu.CustomOp):
    """Two outputs, written against the array module (placed on the device when there is one)."""
    inputs = ["float"]
    outputs = ["float", "float"]

    def Compute(self, inputs, outputs, xp):
        x = inputs[0]
        outputs[0] = xp.min(x, axis=-1, keepdims=True)
        outputs[1] = xp.max(x, axis=-1, keepdims=True)

    def infer_shapes(self, input_shapes, attributes):
        s = list(input_shapes[0][:-1]) + [1]
        return [s, s]


@ortgpu.custom_op(DOMAIN, "SoftClip", inputs=["float"], outputs=["float"], attrs={"limit": 3.0},
                  shape="same", register=False)
def soft_clip(x, *, limit, xp):
    """limit * tanh(x / limit): one body for NumPy and CuPy."""
    return (xp.tanh(x / np.float32(limit)) * np.float32(limit)).astype(x.dtype)


@ortgpu.custom_op(DOMAIN, "Tile2", inputs=["float"], outputs=["float"], register=False,
                  shape=lambda s: [s[0], 2 * s[1]] if isinstance(s[1], int) else [s[0], None])
def tile2(x):
    """A host-only op (no xp): on a device session it runs on the CPU with copies around it."""
    assert isinstance(x, np.ndarray)
    return np.concatenate([x, x], axis=1)


def _vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def _model(nodes, inputs, outputs, domain=DOMAIN, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(domain, 1)],
                             ir_version=10)


def _chain_model(domain=DOMAIN):
    """Relu -> Scale -> SoftClip -> Tile2 -> MinMax -> Add: custom ops between onnx ops."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Scale", ["r"], ["s"], domain=domain, alpha=2.5, name="scale"),
             helper.make_node("SoftClip", ["s"], ["c"], domain=domain, limit=2.0, name="clip"),
             helper.make_node("Tile2", ["c"], ["t"], domain=domain, name="tile"),
             helper.make_node("MinMax", ["t"], ["lo", "hi"], domain=domain, name="minmax"),
             helper.make_node("Sub", ["hi", "lo"], ["y"], name="range")]
    return _model(nodes, [_vi("x", F, ["n", 4])], [_vi("y", F, None), _vi("t", F, None)], domain)


def _chain_numpy(x):
    s = np.maximum(x, 0) * np.float32(2.5)
    c = (np.tanh(s / np.float32(2.0)) * np.float32(2.0)).astype(np.float32)
    t = np.concatenate([c, c], axis=1)
    return t.max(-1, keepdims=True) - t.min(-1, keepdims=True), t


def _typed(model, ops) -> dict:
    """{value: (element type, dims or None)} of the model as a session types it after loading."""
    from ortgpu import custom_op_types
    from ortgpu.loading import prepare_model
    typed, _ = custom_op_types.prepare(prepare_model(model.SerializeToString())[0], ops)
    out = {}
    for vi in list(typed.graph.value_info) + list(typed.graph.output):
        tt = vi.type.tensor_type
        dims = [d.dim_value or d.dim_param or None for d in tt.shape.dim] if tt.HasField("shape") else None
        out[vi.name] = (tt.elem_type, dims)
    return out


def _ops(domain=DOMAIN):
    return [Scale("Scale", 1, domain), soft_clip, tile2, MinMax("MinMax", 1, domain)]


def _x(n=3):
    return np.random.default_rng(0).standard_normal((n, 4)).astype(np.float32)


# --- both styles, CPU and the device double ---------------------------------------------------

def test_both_styles_on_the_cpu_match_numpy():
    sess = ortgpu.InferenceSession(_chain_model().SerializeToString(), providers=CPU, custom_ops=_ops())
    x = _x()
    y, t = sess.run(None, {"x": x})
    ry, rt = _chain_numpy(x)
    np.testing.assert_allclose(y, ry, rtol=1e-6)
    np.testing.assert_array_equal(t, rt)
    assert {p for _, _, p in sess.get_provider_assignment()} == {"CPUExecutionProvider"}


def test_on_the_device_double_generic_ops_go_to_the_device_and_host_ops_get_copies():
    sess = ortgpu.InferenceSession(_chain_model().SerializeToString(), providers=double_providers(),
                                   custom_ops=_ops())
    x = _x(5)
    y, t = sess.run(None, {"x": x})
    ry, rt = _chain_numpy(x)
    np.testing.assert_allclose(y, ry, rtol=1e-6)
    np.testing.assert_array_equal(t, rt)
    steps = sess.get_provider_assignment()
    where = {op: prov for _, op, prov in steps if not op.startswith("Memcpy")}
    assert where == {"Relu": DEV, "Scale": "CPUExecutionProvider", "SoftClip": DEV,
                     "Tile2": "CPUExecutionProvider", "MinMax": DEV, "Sub": DEV}
    ops = [op for _, op, _ in steps]
    # each host-only op sits between a copy to the host and a copy back to the device
    for host_op in ("Scale", "Tile2"):
        i = ops.index(host_op)
        assert ops[i - 1] == "MemcpyToHost" and ops[i + 1] == "MemcpyFromHost", ops


def test_generic_op_body_receives_device_arrays(monkeypatch):
    seen = []

    @ortgpu.custom_op(DOMAIN, "Probe", inputs=["float"], outputs=["float"], register=False)
    def probe(x, *, xp):
        seen.append(type(x))
        return xp.negative(x)
    model = _model([helper.make_node("Probe", ["x"], ["y"], domain=DOMAIN)], [_vi("x", F, [2])],
                   [_vi("y", F, [2])])
    sess = ortgpu.InferenceSession(model.SerializeToString(), providers=double_providers(), custom_ops=[probe])
    np.testing.assert_array_equal(sess.run(None, {"x": np.array([1, -2], np.float32)})[0], [-1, 2])
    assert seen == [FakeArray]


def test_matches_onnxruntime_with_onnxruntime_extensions_pyops():
    ort = pytest.importorskip("onnxruntime")
    ext = pytest.importorskip("onnxruntime_extensions")
    contrib = "ai.onnx.contrib"  # the domain of onnxruntime-extensions' Python ops
    d = ext.PyCustomOpDef

    @ext.onnx_op(op_type="Scale", inputs=[d.dt_float], outputs=[d.dt_float], attrs={"alpha": d.dt_float})
    def _scale(x, **kw):
        return x * np.float32(kw["alpha"])

    @ext.onnx_op(op_type="SoftClip", inputs=[d.dt_float], outputs=[d.dt_float], attrs={"limit": d.dt_float})
    def _clip(x, **kw):
        return soft_clip.body(x, limit=kw["limit"], xp=np)

    @ext.onnx_op(op_type="Tile2", inputs=[d.dt_float], outputs=[d.dt_float])
    def _tile(x):
        return tile2.body(x)

    @ext.onnx_op(op_type="MinMax", inputs=[d.dt_float], outputs=[d.dt_float, d.dt_float])
    def _minmax(x):
        return x.min(-1, keepdims=True), x.max(-1, keepdims=True)

    model = _chain_model(contrib).SerializeToString()
    so = ort.SessionOptions()
    so.register_custom_ops_library(ext.get_library_path())
    theirs = ort.InferenceSession(model, so, providers=CPU)
    x = _x(6)
    expected = theirs.run(None, {"x": x})
    ops = [Scale("Scale", 1, contrib), ortgpu.CustomOpDef(contrib, "SoftClip", soft_clip.body, inputs=["float"],
                                                           outputs=["float"], attrs={"limit": 3.0}),
           ortgpu.CustomOpDef(contrib, "Tile2", tile2.body), MinMax("MinMax", 1, contrib)]
    for provs in (CPU, double_providers()):
        ours = ortgpu.InferenceSession(model, providers=provs, custom_ops=ops).run(None, {"x": x})
        for a, b in zip(ours, expected):
            np.testing.assert_allclose(a, b, rtol=1e-6)


# --- registration: per session, or global with the decorator ----------------------------------

def test_session_ops_do_not_leak_into_other_sessions_or_the_registry():
    model = _chain_model().SerializeToString()
    ortgpu.InferenceSession(model, providers=CPU, custom_ops=_ops())
    assert lookup("Scale", DOMAIN, 1, ("cpu", "shared")) is None
    with pytest.raises(ortgpu.Fail, match=r"test.customops:Scale.*not a registered"):
        ortgpu.InferenceSession(model, providers=CPU)
    # a session with only some of the ops fails on the first missing one
    with pytest.raises(ortgpu.Fail, match="Tile2"):
        ortgpu.InferenceSession(model, providers=CPU, custom_ops=[Scale("Scale", 1, DOMAIN), soft_clip])


def test_decorator_registers_globally_until_unregistered():
    @ortgpu.custom_op("test.global", "Twice", inputs=["float"], outputs=["float"], shape="same")
    def twice(x, *, xp):
        return x + x
    try:
        model = _model([helper.make_node("Twice", ["x"], ["y"], domain="test.global")], [_vi("x", F, [3])],
                       [_vi("y", F, None)], domain="test.global").SerializeToString()
        for provs in (CPU, double_providers()):
            sess = ortgpu.InferenceSession(model, providers=provs)  # no custom_ops= needed
            np.testing.assert_array_equal(sess.run(None, {"x": np.arange(3, dtype=np.float32)})[0], [0, 2, 4])
            assert sess.get_outputs()[0].shape == [3]
        assert twice(np.ones(2), xp=np).tolist() == [2, 2]  # still callable as a function
    finally:
        twice.unregister()
    with pytest.raises(ortgpu.Fail, match="Twice"):
        ortgpu.InferenceSession(model, providers=CPU)


def test_session_op_takes_precedence_over_a_global_one_of_the_same_name():
    @ortgpu.custom_op("test.prec", "Op", inputs=["float"], outputs=["float"])
    def global_op(x):
        return x + np.float32(1)
    try:
        local = ortgpu.CustomOpDef("test.prec", "Op", lambda x: x + np.float32(100), inputs=["float"])
        model = _model([helper.make_node("Op", ["x"], ["y"], domain="test.prec")], [_vi("x", F, [1])],
                       [_vi("y", F, None)], domain="test.prec").SerializeToString()
        x = {"x": np.zeros(1, np.float32)}
        assert ortgpu.InferenceSession(model, providers=CPU, custom_ops=[local]).run(None, x)[0][0] == 100
        assert ortgpu.InferenceSession(model, providers=CPU).run(None, x)[0][0] == 1
    finally:
        global_op.unregister()


def test_op_version_resolves_to_the_newest_not_past_the_model_opset():
    v1 = ortgpu.CustomOpDef("test.ver", "Op", lambda x: x + np.float32(1), version=1)
    v3 = ortgpu.CustomOpDef("test.ver", "Op", lambda x: x + np.float32(3), version=3)
    x = {"x": np.zeros(1, np.float32)}
    for opset, want in ((1, 1), (2, 1), (3, 3), (5, 3)):
        g = helper.make_graph([helper.make_node("Op", ["x"], ["y"], domain="test.ver")], "g",
                              [_vi("x", F, [1])], [_vi("y", F, None)])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("test.ver", opset)],
                              ir_version=10)
        assert ortgpu.InferenceSession(m.SerializeToString(), providers=CPU,
                                       custom_ops=[v1, v3]).run(None, x)[0][0] == want


# --- declarations: types, shapes, attributes ---------------------------------------------------

def test_declared_types_and_shapes_reach_shape_inference():
    sess = ortgpu.InferenceSession(_chain_model().SerializeToString(), providers=CPU, custom_ops=_ops())
    outs = {o.name: (o.type, o.shape) for o in sess.get_outputs()}
    # Tile2's shape function doubles the static dim; MinMax keeps n and gives 1; Sub broadcasts
    assert outs == {"y": ("tensor(float)", ["n", 1]), "t": ("tensor(float)", ["n", 8])}
    assert _typed(_chain_model(), _ops())["c"] == (F, ["n", 4])  # an intermediate, for the placement


def test_output_type_defaults_to_input_zero_and_the_shape_may_stay_unknown():
    op = ortgpu.CustomOpDef(DOMAIN, "Ident", lambda x: x.copy())
    model = _model([helper.make_node("Ident", ["x"], ["i"], domain=DOMAIN),
                    helper.make_node("Cast", ["i"], ["y"], to=F)],
                   [_vi("x", I64, [2])], [_vi("y", F, None)])
    assert _typed(model, [op])["i"] == (I64, None)
    sess = ortgpu.InferenceSession(model.SerializeToString(), providers=double_providers(), custom_ops=[op])
    np.testing.assert_array_equal(sess.run(None, {"x": np.array([3, 4])})[0], [3.0, 4.0])


def test_wrong_input_type_is_refused_at_session_creation():
    model = _model([helper.make_node("Scale", ["x"], ["y"], domain=DOMAIN)], [_vi("x", I64, [2])],
                   [_vi("y", F, None)])
    with pytest.raises(ortgpu.InvalidGraph, match=r"tensor\(int64\).*input 0 \('x'\).*Scale.*tensor\(float\)"):
        ortgpu.InferenceSession(model.SerializeToString(), providers=CPU, custom_ops=[Scale("Scale", 1, DOMAIN)])


def test_attributes_required_undeclared_and_defaults():
    need = ortgpu.CustomOpDef(DOMAIN, "Need", lambda x, *, k: x * np.float32(k), attrs=["k"])

    def model(**attrs):
        return _model([helper.make_node("Need", ["x"], ["y"], domain=DOMAIN, **attrs)], [_vi("x", F, [2])],
                      [_vi("y", F, None)]).SerializeToString()
    with pytest.raises(ortgpu.InvalidGraph, match=r"required attribute\(s\) \['k'\] missing"):
        ortgpu.InferenceSession(model(), providers=CPU, custom_ops=[need])
    with pytest.raises(ortgpu.InvalidGraph, match=r"\['typo'\] not declared \(declared: \['k'\]\)"):
        ortgpu.InferenceSession(model(k=2.0, typo=1), providers=CPU, custom_ops=[need])
    out = ortgpu.InferenceSession(model(k=2.0), providers=CPU, custom_ops=[need]).run(
        None, {"x": np.ones(2, np.float32)})[0]
    np.testing.assert_array_equal(out, [2, 2])
    # a default applies when the node leaves the attribute out (Scale's alpha = 1.0)
    m = _model([helper.make_node("Scale", ["x"], ["y"], domain=DOMAIN)], [_vi("x", F, [2])], [_vi("y", F, None)])
    out = ortgpu.InferenceSession(m.SerializeToString(), providers=CPU, custom_ops=[Scale("Scale", 1, DOMAIN)]).run(
        None, {"x": np.array([1, 2], np.float32)})[0]
    np.testing.assert_array_equal(out, [1, 2])


def test_a_body_that_breaks_its_declaration_fails_naming_the_node():
    bad = ortgpu.CustomOpDef(DOMAIN, "Bad", lambda x: x.astype(np.float64), inputs=["float"], outputs=["float"])
    model = _model([helper.make_node("Bad", ["x"], ["y"], domain=DOMAIN, name="bad_node")], [_vi("x", F, [2])],
                   [_vi("y", F, None)])
    sess = ortgpu.InferenceSession(model.SerializeToString(), providers=CPU, custom_ops=[bad])
    with pytest.raises(ortgpu.Fail, match=r"bad_node.*output 0 is float64, declared float32"):
        sess.run(None, {"x": np.ones(2, np.float32)})

    class Unset(ortgpu.CustomOp):
        def Compute(self, inputs, outputs):
            pass
    model = _model([helper.make_node("Unset", ["x"], ["y"], domain=DOMAIN, name="unset")], [_vi("x", F, [2])],
                   [_vi("y", F, None)])
    sess = ortgpu.InferenceSession(model.SerializeToString(), providers=CPU, custom_ops=[Unset("Unset", 1, DOMAIN)])
    with pytest.raises(ortgpu.Fail, match="unset.*output 0 was not set"):
        sess.run(None, {"x": np.ones(2, np.float32)})


def test_bad_arguments_are_typed_errors():
    with pytest.raises(ortgpu.InvalidArgument, match="pass an instance"):
        ortgpu.InferenceSession(_chain_model().SerializeToString(), providers=CPU, custom_ops=[Scale])
    with pytest.raises(ortgpu.InvalidArgument, match="expected an ortgpu.CustomOp"):
        ortgpu.InferenceSession(_chain_model().SerializeToString(), providers=CPU, custom_ops=[len])
    with pytest.raises(ortgpu.InvalidArgument, match="domain of its own"):
        ortgpu.CustomOpDef("", "Relu2", lambda x: x)
    with pytest.raises(ortgpu.InvalidArgument, match="not an element type"):
        ortgpu.CustomOpDef(DOMAIN, "T", lambda x: x, inputs=["floaty"])
    with pytest.raises(ortgpu.InvalidArgument, match="given twice"):
        ortgpu.InferenceSession(_chain_model().SerializeToString(), providers=CPU, custom_ops=_ops() + [tile2])


def test_register_custom_ops_library_points_to_the_python_api():
    so = ortgpu.SessionOptions()
    with pytest.raises(ortgpu.NotImplemented, match=r"libcustom\.so.*ortgpu\.CustomOp.*@ortgpu\.custom_op"):
        so.register_custom_ops_library("/opt/libcustom.so")


# --- profiling and saved optimized models --------------------------------------------------------

def test_custom_nodes_appear_in_the_profile(tmp_path):
    so = ortgpu.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "custom")
    sess = ortgpu.InferenceSession(_chain_model().SerializeToString(), so, providers=double_providers(),
                                   custom_ops=_ops())
    sess.run(None, {"x": _x()})
    with open(sess.end_profiling()) as f:
        nodes = {e["name"]: e["args"] for e in json.load(f) if e["cat"] == "Node"}
    assert nodes["scale_kernel_time"]["op_name"] == "Scale"
    assert nodes["scale_kernel_time"]["provider"] == "CPUExecutionProvider"
    assert nodes["clip_kernel_time"]["provider"] == DEV
    assert nodes["minmax_kernel_time"]["output_type_shape"] == [{"float": [3, 1]}, {"float": [3, 1]}]


def test_optimized_model_keeps_custom_nodes_in_their_domain(tmp_path):
    path = str(tmp_path / "opt.onnx")
    so = ortgpu.SessionOptions()
    so.optimized_model_filepath = path
    x = _x(4)
    first = ortgpu.InferenceSession(_chain_model().SerializeToString(), so, providers=CPU,
                                    custom_ops=_ops()).run(None, {"x": x})
    saved = onnx.load(path)
    custom = [(n.op_type, n.domain) for n in saved.graph.node if n.domain == DOMAIN]
    assert custom == [("Scale", DOMAIN), ("SoftClip", DOMAIN), ("Tile2", DOMAIN), ("MinMax", DOMAIN)]
    assert {(o.domain, o.version) for o in saved.opset_import} >= {(DOMAIN, 1)}
    alpha = next(a.f for n in saved.graph.node if n.op_type == "Scale" for a in n.attribute)
    assert alpha == 2.5
    again = ortgpu.InferenceSession(path, providers=CPU, custom_ops=_ops()).run(None, {"x": x})
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
