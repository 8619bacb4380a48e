"""Helpers of the fusion tests: build small models, run them fused (ortgpu, all levels) and
unfused (onnxruntime with its own optimizations off, the oracle), and write the optimized
graph back as a model whose fused nodes carry their function bodies (checked with
onnx.checker and run by onnxruntime)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import ortgpu
from ortgpu.fused_ops import DOMAIN, FUNCTIONS

F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
MS = "com.microsoft"


def make_model(nodes, inputs, outputs, initializers=(), opset=17) -> onnx.ModelProto:
    """inputs/outputs: (name, elem type, shape) triples; initializers: {name: array}."""
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        [numpy_helper.from_array(v, k) for k, v in dict(initializers).items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def session(model, level="ORT_ENABLE_ALL", **kw):
    so = ortgpu.SessionOptions()
    so.graph_optimization_level = getattr(ortgpu.GraphOptimizationLevel, level)
    return ortgpu.InferenceSession(model.SerializeToString(), so, **kw)


def ops(sess) -> list[str]:
    return [op for _, op, _ in sess.get_provider_assignment()]


def onnxruntime_run(model, feed):
    ort = __import__("onnxruntime")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feed)


def assert_close(got, want, rtol, atol):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
        np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=rtol, atol=atol)


def check_fusion(model, feed, fused_op, rtol=1e-5, atol=1e-6, count=1, domain=None, **kw):
    """Fused by ortgpu (`count` nodes of `fused_op`), equal to onnxruntime on the unfused model
    and to ortgpu with optimizations off; its saved form (ortgpu ops with function bodies)
    passes onnx.checker, and both it and the model ``optimized_model_filepath`` writes
    (onnxruntime's com.microsoft ops as they are) give the same outputs in onnxruntime.
    `domain`: the domain every `fused_op` node must have.  Returns the fused session."""
    fused = session(model, **kw)
    assert ops(fused).count(fused_op) == count, ops(fused)
    if domain is not None:   # onnxruntime's op (com.microsoft), or ortgpu's where it has none
        found = {n.domain for n in fused._core.plan.graph.nodes if n.op_type == fused_op}
        assert found == {domain}, found
    want = onnxruntime_run(model, feed)
    assert_close(fused.run(None, feed), want, rtol, atol)
    assert_close(session(model, "ORT_DISABLE_ALL").run(None, feed), want, rtol, atol)
    saved = saved_model(fused, model)
    if not old_layer_norm(saved):
        onnx.checker.check_model(saved, full_check=True)
    assert_close(onnxruntime_run(saved, feed), want, rtol, atol)
    written = written_model(model, **kw)
    check_vocabulary(written)
    assert_close(onnxruntime_run(written, feed), want, rtol, atol)
    return fused


def written_model(model, **kw) -> onnx.ModelProto:
    """The model ortgpu writes with ``optimized_model_filepath`` (all levels)."""
    import os  # noqa: PLC0415
    import tempfile  # noqa: PLC0415
    with tempfile.TemporaryDirectory() as d:
        so = ortgpu.SessionOptions()
        so.graph_optimization_level = ortgpu.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = os.path.join(d, "optimized.onnx")
        ortgpu.InferenceSession(model.SerializeToString(), so, **kw)
        return onnx.load(so.optimized_model_filepath)


def check_vocabulary(saved: onnx.ModelProto) -> None:
    """onnxruntime's ops as onnxruntime writes them: com.microsoft nodes without function bodies
    and with the domain imported; function bodies only for the ortgpu domain's ops."""
    imports = {o.domain for o in saved.opset_import}
    domains = {n.domain for n in saved.graph.node}
    assert MS not in domains or MS in imports, imports
    assert {f.domain for f in saved.functions} <= {DOMAIN}
    assert {f.name for f in saved.functions} == {n.op_type for n in saved.graph.node if n.domain == DOMAIN}


def old_layer_norm(model: onnx.ModelProto) -> bool:
    """ai.onnx LayerNormalization below opset 17, which onnxruntime runs (and its optimizer writes)
    but onnx.checker rejects."""
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return opset < 17 and any(n.op_type == "LayerNormalization" and n.domain in ("", "ai.onnx")
                              for n in model.graph.node)


def check_unfused(model, feed, fused_op, rtol=1e-5, atol=1e-6, **kw):
    """A near-miss: ortgpu keeps the pattern and still matches onnxruntime."""
    fused = session(model, **kw)
    assert fused_op not in ops(fused), ops(fused)
    assert_close(fused.run(None, feed), onnxruntime_run(model, feed), rtol, atol)


def _attr(name, value):
    if isinstance(value, list) and not value:
        return None
    return helper.make_attribute(name, value)


def saved_model(sess, original: onnx.ModelProto) -> onnx.ModelProto:
    """The session's optimized top-level graph as a model, fused nodes with their bodies;
    nodes of one op type with different bodies call overloads of it (IR 10)."""
    graph = sess._core.plan.graph
    nodes, functions = [], {}
    for n in graph.nodes:
        if n.proto is not None and list(n.proto.input) == n.inputs and list(n.proto.output) == n.outputs:
            nodes.append(n.proto)   # (a pass that renamed a node's inputs left its proto stale)
            continue
        attrs = [a for a in (_attr(k, v) for k, v in n.attrs.items()) if a is not None]
        p = helper.make_node(n.op_type, n.inputs, n.outputs, name=n.name, domain=n.domain)
        p.attribute.extend(attrs)
        if n.domain == DOMAIN:
            body = FUNCTIONS[n.op_type](n, graph.opsets[""])
            key = (n.op_type, body.SerializeToString())
            if key not in functions:
                body.overload = f"v{sum(1 for k in functions if k[0] == n.op_type)}"
                functions[key] = body
            p.overload = functions[key].overload
        nodes.append(p)
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in graph.initializers.items()]
    g = helper.make_graph(nodes, "optimized", list(original.graph.input), list(original.graph.output), inits)
    opsets = [helper.make_opsetid(d, v) for d, v in graph.opsets.items()]
    return helper.make_model(g, opset_imports=opsets, ir_version=max(original.ir_version, 10),
                             functions=list(functions.values()))


def randn(*shape, dtype=np.float32, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def const(name, value, dtype=np.float32):
    """A Constant node holding `value` as a tensor of `dtype` (a scalar for a Python number)."""
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, dtype)))
