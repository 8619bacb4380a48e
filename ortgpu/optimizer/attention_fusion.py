"""AttentionFusion (extended level): multi-head self-attention as exporters write it (BERT,
GPT-2 with a KV cache, ViT) becomes one Attention node: onnxruntime's
``com.microsoft::Attention`` for float32 (past key and value stacked into its ``past``, its
``present`` split back, an attention bias expanded to (B|1, N|1, S, T) by ai.onnx nodes
around it), else ``ortgpu::Attention`` (providers/kernels/fused_attention.py; a function
body): for other types, and for an attention bias together with a past, which onnxruntime's
op refuses.

Pattern, from the Softmax outwards (operands of Add and Mul in either order)::

    q2, k2, v2 = three projections of one x (Add(MatMul(x, W), b) or MatMul(x, W)), or the
                 three equal parts of one projection split on the last axis (Split of
                 Add(MatMul(x, W), b), MatMul(x, W) or Reshape(Gemm(Reshape(x), W, b)))
    heads(t)   = Transpose(Reshape(t, [B, S, N, D]), perm=[0, 2, 1, 3])
    keys       = Transpose(Reshape(k2), [0, 2, 3, 1])  |  Transpose(K, [0, 1, 3, 2])  |
                 Reshape(Transpose(Reshape(K, [-1, S, D]), [0, 2, 1]), [B, N, D, S]) (torch's
                 dynamo export) with K = heads(k2) or K = Concat(past_key, heads(k2), axis=2)
                 (V alike)
    scores     = Mul(MatMul(q, keys), scale) | Div(..., c) | MatMul(...), where the MatMul's
                 operands may each be times a scalar constant (q = heads(q2) * c1, keys * c2:
                 the scale is the product)
    probs      = Softmax(Add(scores, attention_bias)?, axis=-1), then no-op Casts and
                 Where(IsNaN(probs), 0, probs) (the kernels give a row of masked keys zeros)
    output     = Reshape(Transpose(MatMul(probs, V), [0, 2, 1, 3]), [B, S, N * D]), the product
                 possibly first reshaped to its own shape [B, N, S, D] (torch's TorchScript export)

Rules: W and b are constants (separate projections are packed side by side into one new
weight and bias); every Reshape keeps dims 0 and 1 (a 0, or Shape-derived dims of x, of
another value of the pattern known to share them, or of any value whose dim carries the same
declared dim_param, see shape_patterns.py; with allowzero only when no target element is a
literal 0) and splits or
merges only the last axis into N heads of size D with constants; scale is a constant
scalar; every intermediate is read only inside the pattern or by shape computations that
die with it; present keys and values may have other readers (graph outputs): the fused node
produces them.  When the final Reshape's target cannot be checked but consists of kept
leading dims and non-zero constants, it stays and reads the fused output (both hold the
elements in the same order).  x is float, and float32 only below opset 15 (the function
body's scale constant).  The provider that would run the Softmax must have an Attention
kernel.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ortgpu.fused_ops import DOMAIN, MS_DOMAIN, body_supports, ms_takes
from ortgpu.graph import Graph, Node
from ortgpu.graph_query import add_initializer, elem_type, unique_name
from ortgpu.optimizer.graph_tools.matching import GraphView, apply, make_node, provider_runs
from ortgpu.optimizer.graph_tools.shape_patterns import element_keeps_dim, keeps_leading_dims, shape_elements

HEADS_PERM = [0, 2, 1, 3]


@dataclasses.dataclass
class _Projection:
    x: str
    weight: np.ndarray          # (Hin, out)
    bias: np.ndarray | None     # (out,)
    nodes: list[Node]
    values: list[str]           # intermediates that must die with the pattern


@dataclasses.dataclass
class _Heads:
    source: str                 # the (B, S, hidden) value split into heads
    heads: int
    size: int
    elements: list              # the Reshape target (shape_patterns.shape_elements)
    nodes: list[Node]
    values: list[str]


def fuse_attention(graph: Graph, providers, overridable: set[str]) -> int:
    """Fuse every matching self-attention block; returns the number of fusions."""
    view = GraphView(graph, overridable)
    removed, added, claimed = [], [], set()
    for sm in graph.nodes:
        if sm.op_type != "Softmax" or sm.domain != "":
            continue
        m = _match(graph, providers, view, sm)
        if m is None or any(id(n) in claimed for n in m[1]):
            continue
        fused, nodes, extra, weight, bias = m
        _commit(graph, fused, weight, bias)
        claimed.update(id(n) for n in nodes)
        removed += nodes
        added += [fused] + extra
    if added:
        apply(graph, removed, added)
    return sum(1 for n in added if n.op_type == "Attention")


# ----------------------------------------------------------------------------- matching

def _match(graph: Graph, providers, view: GraphView, sm: Node):
    axis = sm.attrs.get("axis", -1 if sm.opset >= 13 else 1)
    if axis not in (-1, 3) or view.rank(sm.inputs[0]) not in (None, 4):
        return None
    core = _scores(view, sm.inputs[0])
    if core is None:
        return None
    qk, scale, mask, score_nodes, q_in, k_in = core
    tail = _output(view, sm)
    if tail is None:
        return None
    pv, out_nodes, merged, same = tail
    q = _heads(view, q_in, HEADS_PERM)
    keys = _keys(view, k_in)
    values = _present(view, pv.inputs[1])
    if q is None or keys is None or values is None:
        return None
    k, past_key, present_key, k_nodes, k_values = keys
    v, past_value, present_value, v_nodes, v_values = values
    if (past_key is None) != (past_value is None) or len({(h.heads, h.size) for h in (q, k, v)}) != 1:
        return None
    if same is not None and not _keeps_shape(view, same, {pv.outputs[0], q.values[-1]}, q.heads, q.size):
        return None
    proj = _projections(view, q.source, k.source, v.source)
    if proj is None:
        return None
    x, weight, bias, proj_nodes, proj_values = proj
    hidden = q.heads * q.size
    if weight.shape != (weight.shape[0], 3 * hidden) or not _float_of(view, x, weight) \
            or (mask and view.rank(mask) not in (None, 1, 2, 3, 4)):
        return None
    # values whose dims 0 and 1 are (B, S): dims of any of them may build the Reshape targets
    family = {x, q.source, k.source, v.source, out_nodes[-1].outputs[0]} | set(proj_values)
    out, keep = _merged_output(view, merged, family, hidden, x)
    if out is None:
        return None
    nodes = proj_nodes + q.nodes + k_nodes + v_nodes + [qk] + score_nodes + [sm] + out_nodes + [merged]
    inner = proj_values + q.values + k_values + v_values + [qk.outputs[0]] + \
        [n.outputs[0] for n in score_nodes + [sm] + out_nodes]
    inner = [v for v in inner if v not in (present_key, present_value)]
    if not all(_same_split(view, h, x, family) for h in (q, k, v)) or not view.contained(inner, nodes):
        return None
    attrs = {"num_heads": q.heads, "scale": float(scale)}
    extra = [keep] if keep is not None else []
    ms = _ms_attention(graph, view, sm, x, mask, (past_key, past_value), (present_key, present_value),
                       out, attrs) if scale and ms_takes(elem_type(view.graph, x)) and not (mask and past_key) \
        else None
    if ms is not None and provider_runs(graph, providers, sm, ms[0]):
        return ms[0], nodes, extra + ms[1], weight, bias
    if not body_supports(elem_type(view.graph, x), graph.opsets.get("", 1)):
        return None
    inputs = [x, "", "", mask or "", past_key or "", past_value or ""]
    outputs = [out, present_key or "", present_value or ""]   # a function call names every output
    fused = make_node("Attention", DOMAIN, graph, inputs, outputs, attrs, sm)
    if not provider_runs(graph, providers, sm, fused):
        return None
    return fused, nodes, extra, weight, bias


# ----------------------------------------------------------------------------- onnxruntime's op

def _ms_attention(graph: Graph, view: GraphView, sm: Node, x: str, mask: str | None, past, present,
                  out: str, attrs: dict):
    """onnxruntime's ``com.microsoft::Attention`` for the match, with the ai.onnx nodes that
    adapt its inputs and outputs: past key and value stacked into ``past`` (2, B, N, P, D),
    ``present`` split back into the present key and value, and the attention bias expanded to
    (B|1, N|1, S, T) (onnxruntime takes no other shape).  Returns (node, adapter nodes), or
    None below opset 8 (no Expand)."""
    opset = graph.opsets.get("", 1)
    if opset < 8:
        return None
    names = _Names(graph, sm.name or out)
    extra: list[Node] = []

    def node(op, inputs, outputs, **kw):
        n = make_node(op, "", graph, inputs, outputs, kw, sm)
        extra.append(n)
        return outputs[0]

    def const(base, value):
        return add_initializer(graph, names.new(base), np.asarray(value, np.int64))

    past_key, past_value = past
    stacked = ""
    if past_key:
        parts = []
        for p in (past_key, past_value):
            if opset >= 13:
                parts.append(node("Unsqueeze", [p, const("axis0", [0])], [names.new("past_part")]))
            else:
                parts.append(node("Unsqueeze", [p], [names.new("past_part")], axes=[0]))
        stacked = node("Concat", parts, [names.new("past")], axis=0)
    bias = ""
    if mask:
        bias = mask if _exact_bias(view, x, mask, bool(past_key)) else _expanded_bias(node, const, names, x, mask,
                                                                                          past_key)
    inputs = [x, "", "", "", stacked, bias]
    while not inputs[-1]:
        inputs.pop()
    outputs = [out]
    if any(present):
        outputs.append(names.new("present"))
        for i, name in enumerate(present):
            if name:
                node("Gather", [outputs[1], const("index", i)], [name], axis=0)
    fused = make_node("Attention", MS_DOMAIN, graph, inputs, outputs, attrs, sm)
    return fused, extra


class _Names:
    """Fresh value names for the adapter nodes of one fusion."""

    def __init__(self, graph: Graph, base: str):
        self.graph, self.base, self.used = graph, base, set()

    def new(self, hint: str) -> str:
        name = unique_name(self.graph, f"{self.base}/{hint}")
        while name in self.used:
            name = unique_name(self.graph, f"{name}_")
        self.used.add(name)
        return name


def _exact_bias(view: GraphView, x: str, mask: str, with_past: bool) -> bool:
    """Whether the attention bias is known to be (B|1, N|1, S, S) already (no past)."""
    m, xs = view.shape(mask), view.shape(x)
    return (not with_past and m is not None and xs is not None and len(m) == 4 and len(xs) == 3
            and xs[1] is not None and m[2] == xs[1] and m[3] == xs[1])


def _expanded_bias(node, const, names, x: str, mask: str, past_key: str | None) -> str:
    """Expand(mask, [1, 1, S, T]): S from x's shape, T = S (+ the past's length)."""
    seq = node("Gather", [node("Shape", [x], [names.new("x_shape")]), const("seq_axis", [1])],
               [names.new("seq")], axis=0)
    total = seq
    if past_key:
        past_len = node("Gather", [node("Shape", [past_key], [names.new("past_shape")]), const("past_axis", [2])],
                        [names.new("past_len")], axis=0)
        total = node("Add", [past_len, seq], [names.new("total")])
    target = node("Concat", [const("ones", [1, 1]), seq, total], [names.new("bias_shape")], axis=0)
    return node("Expand", [mask, target], [names.new("attention_bias")])


def _float_of(view: GraphView, x: str, weight: np.ndarray) -> bool:
    """x is a float tensor of the weight's dtype."""
    from ortgpu.dtypes import np_dtype  # noqa: PLC0415
    return view.is_float(x) and np_dtype(elem_type(view.graph, x)) == weight.dtype


def _scores(view: GraphView, s_in: str):
    """(QK MatMul, scale, attention bias or None, nodes, the MatMul's query and key operands
    with their scalings peeled) of the Softmax input."""
    add = view.op(s_in, "Add")
    if add is not None and len(add.inputs) == 2:
        for i in (0, 1):
            scaled = _scaled(view, add.inputs[i])
            if scaled is not None:
                qk, scale, nodes, q_in, k_in = scaled
                return qk, scale, add.inputs[1 - i], nodes + [add], q_in, k_in
        return None
    scaled = _scaled(view, s_in)
    return None if scaled is None else (*scaled[:2], None, *scaled[2:])


def _scaled(view: GraphView, name: str):
    """(MatMul, scale, nodes, query operand, key operand) for MatMul, MatMul * c, c * MatMul or
    MatMul / c, each MatMul operand possibly itself times a scalar constant (torch's
    scaled_dot_product_attention export scales q and k by the 4th root of 1/D each)."""
    node = view.producer.get(name)
    if node is None or node.domain != "":
        return None
    if node.op_type == "MatMul":
        return _operands_scaled(view, node, 1.0, [])
    if node.op_type not in ("Mul", "Div") or len(node.inputs) != 2:
        return None
    order = (0, 1) if node.op_type == "Div" else (0, 1, 1, 0)
    for i, j in zip(order[::2], order[1::2]):
        qk, c = view.op(node.inputs[i], "MatMul"), view.scalar(node.inputs[j])
        if qk is not None and c:
            return _operands_scaled(view, qk, 1.0 / c if node.op_type == "Div" else c, [node])
    return None


def _operands_scaled(view: GraphView, qk: Node, scale: float, nodes: list):
    """The MatMul's operands with a Mul by a nonzero scalar constant peeled off each (its
    factor folded into the scale): (MatMul, scale, nodes, query operand, key operand)."""
    operands = []
    for name in qk.inputs:
        mul = view.op(name, "Mul")
        c = None
        if mul is not None and len(mul.inputs) == 2:
            for i in (0, 1):
                c = view.scalar(mul.inputs[1 - i])
                if c:
                    operands.append(mul.inputs[i])
                    scale *= c
                    nodes = nodes + [mul]
                    break
        if not c:
            operands.append(name)
    return qk, scale, nodes, operands[0], operands[1]


def _output(view: GraphView, sm: Node):
    """(probs @ V MatMul, nodes up to the heads transpose, the merging Reshape)."""
    probs, casts = view.skip_noop_casts(sm.outputs[0])
    guard = _nan_guard(view, probs)
    if guard is not None:
        probs, casts = guard[0], casts + guard[1]
    pv = [r for r in view.readers_of(probs, "MatMul") if r.inputs[0] == probs]
    if len(pv) != 1:
        return None
    heads_out, same = pv[0].outputs[0], None
    tr = [r for r in view.readers_of(heads_out, "Transpose") if r.attrs.get("perm") == HEADS_PERM]
    if not tr:   # a Reshape of the product to its own shape first (torch's TorchScript export)
        same = [r for r in view.readers_of(heads_out, "Reshape") if r.inputs[0] == heads_out]
        if len(same) != 1:
            return None
        same = same[0]
        tr = [r for r in view.readers_of(same.outputs[0], "Transpose") if r.attrs.get("perm") == HEADS_PERM]
    if len(tr) != 1:
        return None
    rs = [r for r in view.readers_of(tr[0].outputs[0], "Reshape") if r.inputs[0] == tr[0].outputs[0]]
    if len(rs) != 1:
        return None
    return pv[0], casts + [pv[0]] + ([same] if same is not None else []) + [tr[0]], rs[0], same


def _keeps_shape(view: GraphView, rs: Node, sources: set[str], heads: int, size: int) -> bool:
    """Whether Reshape `rs` of the (B, N, S, D) product gives it back its own shape: each target
    element dim i of a value known to be (B, N, S, D) (the product, the query's heads), or N and
    D as constants, or a 0 copying the dim (allowzero off); one -1 when the other three are so."""
    elems = shape_elements(view, rs.inputs[1])
    if elems is None or len(elems) != 4 or rs.opset < 5 or elems.count(("const", -1)) > 1:
        return False
    for i, e in enumerate(elems):
        if e is None:
            return False
        if e[0] == "const":
            if not (e[1] in ((None, heads, None, size)[i], -1) or (e[1] == 0 and not rs.attrs.get("allowzero", 0))):
                return False
        elif not (e[1] in sources and e[2] is not None and e[2] % 4 == i and view.rank(e[1]) == 4):
            return False
    return True


def _nan_guard(view: GraphView, probs: str):
    """Where(IsNaN(p), 0, p) after the Softmax (torch's export, for rows whose keys are all
    masked): (its output, its nodes).  The fused kernels give such rows zeros already (a
    softmax over -inf only; see contrib_attention._attend)."""
    isnan = view.readers_of(probs, "IsNaN")
    where = view.readers_of(isnan[0].outputs[0], "Where") if len(isnan) == 1 else []
    if len(where) != 1 or where[0].inputs[0] != isnan[0].outputs[0] or where[0].inputs[2] != probs \
            or view.scalar(where[0].inputs[1]) != 0.0:
        return None
    return where[0].outputs[0], [isnan[0], where[0]]


def _heads(view: GraphView, name: str, perm) -> _Heads | None:
    """Transpose(Reshape(t, [B, S, N, D]), perm) -> t, N, D (the shape check comes later)."""
    tr = view.op(name, "Transpose")
    if tr is None or tr.attrs.get("perm") != perm:
        return None
    rs = view.op(tr.inputs[0], "Reshape")
    if rs is None or rs.opset < 5:
        return None
    elems = shape_elements(view, rs.inputs[1])
    if elems is None or (rs.attrs.get("allowzero", 0) and ("const", 0) in elems) or len(elems) != 4 or elems[2] is None or elems[3] is None \
            or elems[2][0] != "const" or elems[3][0] != "const":
        return None
    n, d = elems[2][1], elems[3][1]
    hidden = _last_dim(view, rs.inputs[0])
    if n == -1 and d > 0 and hidden and hidden % d == 0:
        n = hidden // d
    if d == -1 and n > 0 and hidden and hidden % n == 0:
        d = hidden // n
    if n <= 0 or d <= 0:
        return None
    return _Heads(rs.inputs[0], n, d, elems, [rs, tr], [rs.outputs[0], tr.outputs[0]])


def _last_dim(view: GraphView, name: str):
    shape = view.shape(name)
    return shape[-1] if shape and isinstance(shape[-1], int) else None


def _keys(view: GraphView, name: str):
    """(heads of k2, past_key, present_key, nodes, values) of the MatMul's second input."""
    direct = _heads(view, name, [0, 2, 3, 1])
    if direct is not None:
        return direct, None, None, direct.nodes, direct.values
    tr = view.op(name, "Transpose")
    if tr is not None and tr.attrs.get("perm") == [0, 1, 3, 2]:
        keys, swap = tr.inputs[0], [tr]
    else:
        swap = _swap_last_two(view, name)
        if swap is None:
            return None
        keys = swap[0].inputs[0]
    found = _present(view, keys)
    if found is None:
        return None
    heads, past, present, nodes, values = found
    return heads, past, present, nodes + swap, values + [n.outputs[0] for n in swap]


def _swap_last_two(view: GraphView, name: str):
    """The nodes of Reshape(Transpose(Reshape(K, [-1, S, D]), [0, 2, 1]), [B, N, D, S]) with
    both targets read from Shape(K) (torch's export of K.transpose(-2, -1)): the last two axes
    of the 4-D K swapped.  None for anything else."""
    back = view.op(name, "Reshape")
    tr = view.op(back.inputs[0], "Transpose") if back is not None else None
    flat = view.op(tr.inputs[0], "Reshape") if tr is not None and tr.attrs.get("perm") == [0, 2, 1] else None
    if flat is None or flat.opset < 5:
        return None
    k = flat.inputs[0]
    if view.rank(k) != 4:
        return None

    def dim(e, i):  # element e is dim i of K (a constant equal to a known dim too)
        if e is None:
            return False
        if e[0] == "const":
            shape = view.shape(k) or []
            return isinstance(shape[i], int) and shape[i] == e[1]
        return e[1] == k and e[2] is not None and e[2] % 4 == i

    first, second = shape_elements(view, flat.inputs[1]), shape_elements(view, back.inputs[1])
    if first is None or second is None or len(first) != 3 or len(second) != 4:
        return None   # (a constant 0 matches no dim below, so allowzero makes no difference)
    if not (first[0] == ("const", -1) and dim(first[1], 2) and dim(first[2], 3)):
        return None
    if not (dim(second[0], 0) and dim(second[1], 1) and dim(second[2], 3) and dim(second[3], 2)):
        return None
    return [flat, tr, back]


def _present(view: GraphView, name: str):
    """heads(t) or Concat(past, heads(t), axis=2): (heads, past, present, nodes, values)."""
    heads = _heads(view, name, HEADS_PERM)
    if heads is not None:
        return heads, None, None, heads.nodes, heads.values
    cat = view.op(name, "Concat")
    if cat is None or len(cat.inputs) != 2 or cat.attrs.get("axis") not in (2, -2):
        return None
    heads = _heads(view, cat.inputs[1], HEADS_PERM)
    if heads is None or view.rank(cat.inputs[0]) not in (None, 4):
        return None
    return heads, cat.inputs[0], name, heads.nodes + [cat], heads.values


def _same_split(view: GraphView, h: _Heads, x: str, family: set[str]) -> bool:
    """The heads Reshape keeps dims 0 and 1 of its input."""
    return keeps_leading_dims(view, h.elements, family, x)


def _merged_output(view: GraphView, rs: Node, family: set[str], hidden: int, x: str):
    """(name of the fused output, None) when the final Reshape merges the heads into
    (B, S, hidden); (new name, a copy of the Reshape reading it) when its target is made of
    constants other than 0 and dims 0, 1 of x (nothing the fusion removes); else (None, None)."""
    elems = shape_elements(view, rs.inputs[1])
    if elems is None or (rs.attrs.get("allowzero", 0) and ("const", 0) in elems):
        return None, None
    out = rs.outputs[0]
    family = family | {out}
    if len(elems) == 3 and elems[2] is not None and elems[2][0] == "const" and elems[2][1] in (hidden, -1) \
            and keeps_leading_dims(view, elems, family, out):
        return out, None
    kept = all(e is not None and e[0] == "const" and e[1] != 0 for e in elems[2:])
    lead = all(e is not None and (e[0] == "const" or element_keeps_dim(view, e, i, {x}, x))
               for i, e in enumerate(elems[:2]))
    if not (kept and lead):
        return None, None
    merged = f"{out}_attention"
    keep = Node(rs.name, rs.op_type, rs.domain, rs.opset, [merged] + rs.inputs[1:], list(rs.outputs),
                dict(rs.attrs), None)
    return merged, keep


def _projections(view: GraphView, q2: str, k2: str, v2: str):
    """(x, packed weight, packed bias or None, nodes, values) of the Q, K, V sources."""
    split = view.producer.get(q2)
    if split is not None and split.op_type == "Split" and split.domain == "" \
            and split.outputs == [q2, k2, v2] and _equal_thirds(view, split):
        p = _linear(view, split.inputs[0])
        if p is None:
            return None
        return p.x, p.weight, p.bias, p.nodes + [split], p.values + [split.inputs[0], q2, k2, v2]
    parts = [_linear(view, t) for t in (q2, k2, v2)]
    if any(p is None for p in parts) or len({p.x for p in parts}) != 1 \
            or len({p.weight.shape for p in parts}) != 1:
        return None
    weight = np.concatenate([p.weight for p in parts], axis=1)
    bias = None
    if any(p.bias is not None for p in parts):
        bias = np.concatenate([p.bias if p.bias is not None else np.zeros(p.weight.shape[1], p.weight.dtype)
                               for p in parts])
    nodes = [n for p in parts for n in p.nodes]
    values = [v for p in parts for v in p.values] + [q2, k2, v2]
    return parts[0].x, weight, bias, nodes, values


def _equal_thirds(view: GraphView, split: Node) -> bool:
    """A Split of a rank-3 value into three equal parts along its last axis."""
    if split.attrs.get("axis", 0) not in (2, -1) or view.rank(split.inputs[0]) not in (None, 3):
        return False
    if split.attrs.get("axis") == -1 and view.rank(split.inputs[0]) is None:
        return False
    sizes = split.attrs.get("split") if split.opset < 13 else (
        view.ints(split.inputs[1]) if len(split.inputs) > 1 and split.inputs[1] else None)
    if sizes is None:
        return len(split.outputs) == 3 and split.attrs.get("num_outputs", 3) == 3
    return len(sizes) == 3 and len(set(sizes)) == 1


def _linear(view: GraphView, name: str) -> _Projection | None:
    """x @ W (+ b) producing the rank-3 `name`: Add(MatMul(x, W), b), MatMul(x, W), or
    Reshape(Gemm(Reshape(x, [-1, Hin]), W, b), [B, S, out]) checked against x's dims."""
    add = view.op(name, "Add")
    if add is not None and len(add.inputs) == 2:
        for i in (0, 1):
            mm, b = view.op(add.inputs[i], "MatMul"), view.const(add.inputs[1 - i])
            p = _matmul(view, mm) if mm is not None and b is not None else None
            if p is not None and b.shape == (p.weight.shape[1],) and b.dtype == p.weight.dtype:
                return _Projection(p.x, p.weight, b, p.nodes + [add], p.values + [mm.outputs[0]])
        return None
    mm = view.op(name, "MatMul")
    if mm is not None:
        return _matmul(view, mm)
    return _reshaped_gemm(view, name)


def _matmul(view: GraphView, mm: Node) -> _Projection | None:
    w = view.const(mm.inputs[1])
    if w is None or w.ndim != 2 or w.dtype.kind != "f" or view.rank(mm.inputs[0]) not in (None, 3) \
            or view.const(mm.inputs[0]) is not None:
        return None
    return _Projection(mm.inputs[0], w, None, [mm], [])


def _reshaped_gemm(view: GraphView, name: str) -> _Projection | None:
    back = view.op(name, "Reshape")
    gemm = view.op(back.inputs[0], "Gemm") if back is not None else None
    flat = view.op(gemm.inputs[0], "Reshape") if gemm is not None else None
    if flat is None or gemm.attrs.get("transA", 0) or gemm.attrs.get("alpha", 1.0) != 1.0 \
            or gemm.opset < 7 or back.attrs.get("allowzero", 0) or flat.attrs.get("allowzero", 0):
        return None
    w = view.const(gemm.inputs[1])
    c = view.const(gemm.inputs[2]) if len(gemm.inputs) > 2 and gemm.inputs[2] else None
    if w is None or w.ndim != 2 or w.dtype.kind != "f" or (c is None and len(gemm.inputs) > 2 and gemm.inputs[2]):
        return None
    if gemm.attrs.get("transB", 0):
        w = w.T
    if c is not None and (c.shape != (w.shape[1],) or gemm.attrs.get("beta", 1.0) != 1.0):
        return None
    x = flat.inputs[0]
    x_shape = view.shape(x)
    if not x_shape or len(x_shape) != 3 or x_shape[2] != w.shape[0] or view.rank(flat.outputs[0]) != 2:
        return None
    elems = shape_elements(view, back.inputs[1])
    # (a 0 in this target would copy a dim of the flat Gemm output, not of x)
    if elems is None or len(elems) != 3 or elems[2] is None or elems[2][0] != "const" \
            or elems[2][1] not in (w.shape[1], -1) or not keeps_leading_dims(view, elems, {x}, x, False):
        return None
    return _Projection(x, np.ascontiguousarray(w), c, [flat, gemm, back],
                       [flat.outputs[0], gemm.outputs[0]])


# ----------------------------------------------------------------------------- rewrite

def _commit(graph: Graph, fused: Node, weight: np.ndarray, bias: np.ndarray | None) -> None:
    """Store the packed weight and bias as constants and name them in the fused node."""
    x = fused.inputs[0]
    w_name = add_initializer(graph, f"{fused.name}_weight", weight.astype(weight.dtype, copy=False))
    b_name = add_initializer(graph, f"{fused.name}_bias", bias) if bias is not None else ""
    inputs = [x, w_name, b_name] + fused.inputs[3:]
    while inputs and not inputs[-1]:
        inputs.pop()
    fused.inputs = inputs
