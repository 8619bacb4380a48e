"""SkipLayerNormFusion (extended level): a residual Add feeding a layer normalization becomes
one SkipLayerNormalization, which also absorbs a bias Add before the residual: onnxruntime's
``com.microsoft::SkipLayerNormalization`` (outputs: output, mean, inv_std_var,
input_skip_bias_sum; only the first and last are used) for float32 when input and skip have
one shape of rank 2 or 3, as onnxruntime requires; otherwise (other types, a broadcast skip) ``ortgpu::SkipLayerNormalization`` (outputs: output, the sum), which
broadcasts skip as Add does and has a function body.

Pattern (operands of Add in either order)::

    s   = Add(Add(h, bias)?, skip)
    out = LayerNormalization(s, gamma, beta?)       (ai.onnx, or ortgpu's from LayerNormFusion)

Rules: the normalization is over the last axis only, with gamma (and beta) 1-D, and only its
first output is used; the residual Add (ai.onnx) has two float inputs; ``s`` may have other
readers (the next residual, in pre-LN transformers): the fused node then gives it as its
sum output.  A bias Add is absorbed when it is read only by the residual Add and its
other operand is a 1-D constant: the fused kernel adds (h + bias) + skip, as the graph did.
Below opset 15 the ortgpu op is made for float32 only (the function body's epsilon is float32
there).  The
provider that would run the normalization must have a SkipLayerNormalization kernel.
"""
from __future__ import annotations

from ortgpu.fused_ops import DOMAIN, MS_DOMAIN, body_supports, ms_takes
from ortgpu.graph import Graph, Node
from ortgpu.graph_query import elem_type
from ortgpu.optimizer.graph_tools.matching import GraphView, Rewrite, first_runnable, make_node


def fuse_skip_layer_norm(graph: Graph, providers, overridable: set[str]) -> int:
    """Fuse every residual Add + layer normalization; returns the number of fusions."""
    view = GraphView(graph, overridable)
    rewrite = Rewrite()
    opset = graph.opsets.get("", 1)
    for ln in graph.nodes:
        if not _last_axis_layer_norm(view, ln):
            continue
        s = ln.inputs[0]
        add = view.op(s, "Add")
        if add is None or len(add.inputs) != 2 or add.inputs[0] == add.inputs[1] or rewrite.claimed(add):
            continue
        if not view.is_float(s):
            continue
        h, bias, skip, bias_add = _split_bias(view, add, (view.shape(ln.inputs[1]) or [None])[0])
        inputs = [h, skip, ln.inputs[1], ln.inputs[2] if len(ln.inputs) > 2 else "", bias or ""]
        while not inputs[-1]:
            inputs.pop()
        shared = len(view.readers.get(s, ())) > 1 or s in view.graph_outputs
        attrs = {"epsilon": float(ln.attrs.get("epsilon", 1e-5))}
        # onnxruntime's op: input and skip of one shape, (B, S, H) or (T, H); the sum is output 3
        ms_ok = ms_takes(elem_type(view.graph, s)) and view.same_shape(h, skip) and view.rank(h) in (2, 3)
        ms_outputs = [ln.outputs[0], "", "", s] if shared else [ln.outputs[0]]
        body_ok = body_supports(elem_type(view.graph, s), opset)
        fused = first_runnable(
            graph, providers, ln,
            lambda: make_node("SkipLayerNormalization", MS_DOMAIN, graph, inputs, ms_outputs, attrs, ln)
            if ms_ok else None,
            # a function call names every output
            lambda: make_node("SkipLayerNormalization", DOMAIN, graph, inputs, [ln.outputs[0], s if shared else ""],
                              attrs, ln) if body_ok else None)
        if fused is None:
            continue
        nodes = [ln, add] + ([bias_add] if bias_add is not None else [])
        rewrite.replace(nodes, fused)
    return rewrite.finish(graph)


def _last_axis_layer_norm(view: GraphView, ln: Node) -> bool:
    """A LayerNormalization over the last axis, 1-D gamma/beta, statistics outputs unused."""
    if ln.op_type != "LayerNormalization" or ln.domain not in ("", DOMAIN):
        return False
    rank = view.rank(ln.inputs[0])
    axis = ln.attrs.get("axis", -1)
    if not (axis == -1 or (rank is not None and axis == rank - 1)) or ln.attrs.get("stash_type", 1) != 1:
        return False
    if any(o and (view.readers.get(o) or o in view.graph_outputs) for o in ln.outputs[1:]):
        return False
    params = [p for p in ln.inputs[1:3] if p]
    return all(view.rank(p) == 1 for p in params)


def _split_bias(view: GraphView, add: Node, hidden):
    """(h, bias, skip, bias Add node) from the residual Add; bias and its node are None when
    neither operand is a private Add of a 1-D constant of `hidden` elements."""
    for i in (0, 1):
        inner = view.op(add.inputs[i], "Add")
        if inner is None or not view.private(add.inputs[i]) or len(inner.inputs) != 2:
            continue
        for j in (0, 1):
            c = view.const(inner.inputs[j])
            if c is not None and c.shape == (hidden,) and view.const(inner.inputs[1 - j]) is None:
                return inner.inputs[1 - j], inner.inputs[j], add.inputs[1 - i], inner
    return add.inputs[0], None, add.inputs[1], None
