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
ALL_PASSES = {**BASIC_PASSES, **EXTENDED_PASSES, **LAYOUT_PASSES}


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
    return graph, ALL_PASSES[name](graph, providers, overridable)


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
    disabled = [n for n in ALL_PASSES if n not in keep] if keep else []
    return ortgpu.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"],
                                   disabled_optimizers=disabled)


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
