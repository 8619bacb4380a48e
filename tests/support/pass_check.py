"""What the optimizer pass tests share: small models, one pass run on the loaded graph, and
the outputs of the optimized session checked against onnxruntime (optimizations off) and
ortgpu at ORT_DISABLE_ALL."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import ortgpu
from ortgpu import providers_select
from ortgpu.graph import Graph, from_proto
from ortgpu.loading import prepare_model
from ortgpu.optimizer import BASIC_PASSES, EXTENDED_PASSES, LAYOUT_PASSES

FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64


def all_passes() -> dict:
    """Every registered pass by name (read at call time: tests add passes to the tables)."""
    return {**BASIC_PASSES, **EXTENDED_PASSES, **LAYOUT_PASSES}
_RNG = np.random.default_rng(0)


def vi(name, elem=FLOAT, shape=None):
    return helper.make_tensor_value_info(name, elem, shape)


def init(name, value):
    return numpy_helper.from_array(np.asarray(value), name)


def model(nodes, inputs, outputs, inits=(), opset=17, ir_version=8) -> onnx.ModelProto:
    """A model from nodes, (name, elem, shape) or ValueInfoProto inputs/outputs, initializers."""
    as_vi = [x if isinstance(x, onnx.ValueInfoProto) else vi(*x) for x in (*inputs, *outputs)]
    g = helper.make_graph(list(nodes), "g", as_vi[:len(inputs)], as_vi[len(inputs):], list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir_version
    return m


def loaded(m: onnx.ModelProto) -> tuple[Graph, set[str]]:
    """The graph a session would optimize, and the overridable initializer names."""
    proto, _ = prepare_model(m)
    opsets = {("" if i.domain == "ai.onnx" else i.domain): i.version for i in proto.opset_import}
    inits = {t.name for t in proto.graph.initializer}
    overridable = {v.name for v in proto.graph.input if v.name in inits} if proto.ir_version >= 4 else set()
    return from_proto(proto.graph, opsets), overridable


def run_pass(m: onnx.ModelProto, name: str) -> tuple[Graph, int]:
    """Run pass `name` once on the loaded graph of `m`: (graph after it, rewrites reported)."""
    graph, overridable = loaded(m)
    providers = providers_select.create(providers_select.normalize(["CPUExecutionProvider"], None))
    return graph, all_passes()[name](graph, providers, overridable)


def ops(graph: Graph) -> list[str]:
    return [n.op_type for n in graph.nodes]


def session(m: onnx.ModelProto, only: str | tuple | None = None,
            level=ortgpu.GraphOptimizationLevel.ORT_ENABLE_BASIC, **options) -> ortgpu.InferenceSession:
    """An ortgpu session of `m` at `level` with only pass(es) `only` enabled (all passes: None)."""
    so = ortgpu.SessionOptions()
    so.graph_optimization_level = level
    for k, v in options.items():
        setattr(so, k, v)
    keep = {only} if isinstance(only, str) else set(only or ())
    disabled = [n for n in all_passes() if n not in keep] if keep else []
    return ortgpu.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"],
                                   disabled_optimizers=disabled)


def optimized_and_plain(m: onnx.ModelProto, **kwargs) -> tuple[ortgpu.InferenceSession, ortgpu.InferenceSession]:
    """Two ortgpu sessions of `m`: one with the default optimizations (and `kwargs`), one with
    every optimization disabled."""
    data = m.SerializeToString()
    off = ortgpu.SessionOptions()
    off.graph_optimization_level = ortgpu.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ortgpu.InferenceSession(data, **kwargs), ortgpu.InferenceSession(data, off)


def step_ops(sess) -> list[str]:
    return [op for _, op, _ in sess.get_provider_assignment()]


def check_outputs(m: onnx.ModelProto, feeds: dict, only: str | None = None, rtol=1e-6, atol=1e-6) -> list:
    """The outputs of `m` with pass `only` (or every pass) equal onnxruntime's with its
    optimizations off and ortgpu's at ORT_DISABLE_ALL; returns the optimized outputs."""
    import onnxruntime as ort  # noqa: PLC0415
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)
    plain = session(m, level=ortgpu.GraphOptimizationLevel.ORT_DISABLE_ALL).run(None, feeds)
    got = session(m, only).run(None, feeds)
    for a, b, c in zip(got, plain, ref):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
        np.testing.assert_allclose(a, c, rtol=rtol, atol=atol)
        assert a.dtype == c.dtype and a.shape == c.shape
    return got


def f32(*shape):
    """Seeded float32 noise of `shape`."""
    return _RNG.standard_normal(shape).astype(np.float32)


def basic_patterns():
    """One instance of most Basic patterns in one model, and one dead node."""
    nodes = [
        helper.make_node("Identity", ["x"], ["x1"]),
        helper.make_node("Conv", ["x1", "W"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "s", "b", "m", "v"], ["bn"]),
        helper.make_node("Mul", ["bn", "k4"], ["mu"]),
        helper.make_node("Conv", ["mu", "W2", "B2"], ["c2"]),
        helper.make_node("Add", ["c2", "k4b"], ["ad"]),
        helper.make_node("Dropout", ["ad"], ["dr"]),
        helper.make_node("Cast", ["dr"], ["ca"], to=1),
        helper.make_node("Relu", ["ca"], ["r1"]),
        helper.make_node("Relu", ["ca"], ["r2"]),
        helper.make_node("Add", ["r1", "r2"], ["s12"]),
        helper.make_node("Reshape", ["s12", "sh1"], ["f1"]),
        helper.make_node("Reshape", ["f1", "sh2"], ["f2"]),
        helper.make_node("MatMul", ["f2", "M"], ["mm"]),
        helper.make_node("Add", ["mm", "mb"], ["g"]),
        helper.make_node("Unsqueeze", ["cu", "ax"], ["cu2"]),
        helper.make_node("Add", ["g", "cu2"], ["y"]),
        helper.make_node("Neg", ["g"], ["unused"]),
    ]
    inits = [init("W", f32(4, 3, 3, 3)), init("s", f32(4) + 2), init("b", f32(4)), init("m", f32(4)),
             init("v", np.abs(f32(4)) + 0.5), init("k4", f32(1, 4, 1, 1)), init("W2", f32(4, 4, 1, 1)), init("B2", f32(4)),
             init("k4b", f32(4, 1, 1)), init("sh1", np.int64([2, 4, 16])), init("sh2", np.int64([2, 64])),
             init("M", f32(64, 5)), init("mb", f32(5)), init("cu", f32(5)), init("ax", np.int64([0]))]
    return model(nodes, [("x", 1, [2, 3, 4, 4])], [("y", 1, None)], inits)
